// The client of bench:proxy's latency figure, run as a child process: one small
// HTTPS request at a time, each on a fresh connection (a new tunnel through a
// proxy, or straight to the upstream), timed from before the connection to the
// end of the response. "Cold": a name never asked before, so the proxy (or a
// direct client, itself) must look it up; "warm": a name asked just before.
// The contenders take turns sample by sample, so a busy moment of the machine
// falls on all of them alike.
//
//   node latency.js '<json LatencySpec>'  ->  one JSON LatencyResult line on stdout

import { Resolver } from 'node:dns/promises'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { tlsRequest, type Endpoint, type LoadSpec } from './load.js'

export interface LatencySpec {
  /** Each contender: its label, and its proxy (none for direct access). */
  readonly contenders: readonly { readonly label: string; readonly proxy?: Endpoint }[]
  /** The TLS upstream (an address). */
  readonly upstream: Endpoint
  /** The zone the DNS server answers; each contender gets subdomains of its own. */
  readonly zone: string
  /** `address:port` of that DNS server, for the direct client's own lookups. */
  readonly dnsServer: string
  readonly samples: number
  readonly caFile: string
}

/** Milliseconds per sample, by contender label. */
export type LatencyResult = Record<string, { cold: number[]; warm: number[]; errors: number }>

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

export async function runLatency(spec: LatencySpec): Promise<LatencyResult> {
  const secureContext = tls.createSecureContext({
    ca: readFileSync(spec.caFile),
    minVersion: 'TLSv1.3',
  })
  const dns = new Resolver()
  dns.setServers([spec.dnsServer])
  const result: LatencyResult = {}
  const request = async (c: number, name: string, cold: boolean): Promise<void> => {
    const { proxy } = spec.contenders[c] as LatencySpec['contenders'][number]
    let host = spec.upstream.host
    // Without a proxy the client looks a new name up itself, as it would without one.
    if (!proxy && cold) host = (await dns.resolve4(name))[0] ?? host
    const load: LoadSpec = {
      mode: 'churn',
      ...(proxy ? { proxy } : {}),
      upstream: { host, port: spec.upstream.port },
      name,
    }
    const response = await tlsRequest(load, secureContext, '/small')
    if (!response?.subarray(0, 12).equals(Buffer.from('HTTP/1.1 200')))
      throw new Error(`unexpected response for ${name}`)
  }
  const sample = async (c: number, name: string, cold: boolean): Promise<void> => {
    const label = (spec.contenders[c] as LatencySpec['contenders'][number]).label
    const into = (result[label] ??= { cold: [], warm: [], errors: 0 })
    try {
      const ms = await timed(() => request(c, name, cold))
      ;(cold ? into.cold : into.warm).push(ms)
    } catch {
      into.errors++
    }
  }
  const n = spec.contenders.length
  const warmName = (c: number): string => `warm-c${c}.${spec.zone}`
  // Each contender asks for its warm name once before measuring.
  for (let c = 0; c < n; c++) await request(c, warmName(c), true)
  for (let i = 0; i < spec.samples; i++) {
    for (let k = 0; k < n; k++) {
      const c = (i + k) % n
      await sample(c, `s${i}-c${c}.${spec.zone}`, true)
      await sample(c, warmName(c), false)
    }
  }
  return result
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LatencySpec
  void runLatency(spec).then((result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    process.exit(0)
  })
}
