// bench:soak's proxy scenarios (bench/soak.ts runs them): tunnels, slowloris
// and faults against an `isorun proxy` child process and loopback upstreams
// (bench/lib/soak-upstream.ts), each ending with the leak checks of
// bench/lib/soak-leaks.ts against a warm baseline.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { makeCertificates } from './certs.js'
import { heapAfterGc, inspectFlag } from './heap.js'
import { allowOnLoopback, startIsorunProxy } from './isorun-proxy.js'
import { tlsRequest, type LoadSpec } from './load.js'
import { percentile } from './measure.js'
import { freePort } from './net.js'
import { RssSampler } from './procstat.js'
import {
  clientHelloPrefix,
  FAULT_KINDS,
  KeepAliveTunnel,
  openSlow,
  OpError,
  proxiedGet,
  runFault,
  SLOW_KINDS,
  type FaultKind,
} from './soak-clients.js'
import {
  leakChecks,
  mib,
  MiB,
  settle,
  snapshot,
  type Bench,
  type Snapshot,
  type SoakProxy,
} from './soak-leaks.js'
import { check, progress, type Figure, type ScenarioResult } from './soak-report.js'
import { startUpstreamProcess } from './upstream-process.js'
import { fdCount } from './sockets.js'

export type ProxyScenario = 'tunnels' | 'slowloris' | 'faults'

/** How big each scenario is (bench/soak.ts sets it from its options). */
export interface ProxyScale {
  readonly tunnels: number
  readonly tunnelSeconds: number
  readonly slow: number
  readonly reps: number
  /** Latency probes per client kind, without and with the slow connections held. */
  readonly probes: number
}

const NAME = 'bench.test'
const LOOPBACK = '127.0.0.1'
const HERE = fileURLToPath(new URL('.', import.meta.url)) // dist/bench/lib/
const UPSTREAM = join(HERE, 'soak-upstream.js')
/** Each tunnel sends a small request about this often (jittered). */
const TUNNEL_REQUEST_EVERY_MS = 5000
const FAULT_CONCURRENCY = 32
const OPEN_CONCURRENCY = 50
/**
 * How long the proxy gets to drop the slow connections: its handshake and first-bytes
 * limits are 10-15 s; Node's HTTP server checks its 30 s headersTimeout every 30 s.
 */
const DROP_WAIT_MS = 90_000
/** The p99 new clients must stay under while the slow connections are held. */
const SLOWLORIS_P99_GOAL_MS = 100

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------- the proxy under test

async function startProxy(): Promise<SoakProxy> {
  const inspectPort = await freePort()
  const proxy = await startIsorunProxy([...allowOnLoopback(NAME), '--no-log-allowed'], {
    socks: true,
    tls: true,
    nodeFlags: ['--max-semi-space-size=1', inspectFlag(inspectPort)],
  })
  return { ...proxy, inspectPort }
}

function tunnelSpec(bench: Bench, proxy: SoakProxy): LoadSpec {
  return {
    mode: 'churn',
    proxy: { host: LOOPBACK, port: proxy.port },
    upstream: { host: LOOPBACK, port: bench.up.tlsPort },
    name: NAME,
    caFile: bench.caFile,
  }
}

/** Runs `fn` on `items` with at most `limit` at a time. */
async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      await fn(items[i] as T, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

class Errors {
  count = 0
  first: string | undefined
  add(err: unknown): void {
    this.count++
    this.first ??= err instanceof Error ? err.message : String(err)
  }
  get detail(): string {
    return this.count === 0 ? '0' : `${this.count} (first: ${this.first})`
  }
}

/**
 * Operations before the baseline: enough to fill the proxy's ring of recent decisions
 * (1,000) and to compile every code path the scenario takes, so that what the baseline
 * and the end have in common cancels out.
 */
const WARMUP_OPS = 1200

/** A fresh proxy, warmed up with `op` (WARMUP_OPS times), and its baseline once settled. */
async function freshProxy(
  bench: Bench,
  op: (proxy: SoakProxy) => Promise<unknown>,
): Promise<{ proxy: SoakProxy; baseline: Snapshot }> {
  const proxy = await startProxy()
  progress(`warming up a fresh proxy (${WARMUP_OPS} operations like the scenario's)`)
  await pool(Array.from({ length: WARMUP_OPS }), 16, () => op(proxy).then(() => undefined))
  const empty = snapshot(bench, proxy)
  const { after } = await settle(bench, proxy, { ...empty, fds: Number.MAX_SAFE_INTEGER })
  return { proxy, baseline: after }
}

// ---------------------------------------------------------------- tunnels

async function tunnels(bench: Bench, scale: ProxyScale): Promise<ScenarioResult> {
  const { proxy, baseline } = await freshProxy(bench, (p) =>
    tlsRequest(tunnelSpec(bench, p), bench.secureContext, '/small'),
  )
  try {
    const spec = tunnelSpec(bench, proxy)
    const ca = bench.secureContext
    const sampler = new RssSampler(proxy.pid, 500)
    const openErrors = new Errors()
    const requestErrors = new Errors()
    const open: KeepAliveTunnel[] = []
    progress(`tunnels: opening ${scale.tunnels} CONNECT+TLS tunnels`)
    await pool(Array.from({ length: scale.tunnels }), OPEN_CONCURRENCY, async () => {
      try {
        open.push(await KeepAliveTunnel.open(spec, ca))
      } catch (err) {
        openErrors.add(err)
      }
    })
    const peakFds = fdCount(proxy.pid)
    progress(
      `tunnels: ${open.length} open (proxy fds ${peakFds}); requests for ${scale.tunnelSeconds} s`,
    )
    const deadline = Date.now() + scale.tunnelSeconds * 1000
    let requests = 0
    const ticker = setInterval(
      () => progress(`tunnels: ${requests} requests, ${requestErrors.count} errors`),
      10_000,
    )
    await Promise.all(
      open.map(async (t) => {
        await sleep(Math.random() * TUNNEL_REQUEST_EVERY_MS)
        while (Date.now() < deadline) {
          try {
            await t.get('/small')
            requests++
          } catch (err) {
            requestErrors.add(err)
            return
          }
          await sleep(TUNNEL_REQUEST_EVERY_MS * (0.5 + Math.random()))
        }
      }),
    )
    clearInterval(ticker)
    const peakKiB = sampler.stop()
    for (const t of open) t.close()
    progress('tunnels: closed; waiting for the proxy to settle')
    const settled = await settle(bench, proxy, baseline)
    const leaks = leakChecks(baseline, settled)
    return {
      name: 'tunnels',
      title: `${scale.tunnels} concurrent CONNECT+TLS tunnels for ${scale.tunnelSeconds} s (a small request on each every ~${TUNNEL_REQUEST_EVERY_MS / 1000} s)`,
      figures: [
        ['tunnels open at once', open.length],
        ['requests through them', requests],
        ['proxy RSS peak', `${mib(peakKiB)} MiB`],
        ['proxy fds at peak', peakFds],
        ...leaks.figures,
      ],
      checks: [
        check('every tunnel opened', openErrors.count === 0, openErrors.detail),
        check('no request failed', requestErrors.count === 0, requestErrors.detail),
        ...leaks.checks,
      ],
    }
  } finally {
    await proxy.stop()
  }
}

// ---------------------------------------------------------------- slowloris

interface Latency {
  readonly p50: number
  readonly p99: number
  readonly errors: Errors
}

/** scale.probes new clients one after another; each one's latency in ms. */
async function probe(
  kind: 'http' | 'connect',
  bench: Bench,
  proxy: SoakProxy,
  scale: ProxyScale,
): Promise<Latency> {
  const spec = tunnelSpec(bench, proxy)
  const ca = bench.secureContext
  const times: number[] = []
  const errors = new Errors()
  for (let i = 0; i < scale.probes; i++) {
    const started = performance.now()
    try {
      if (kind === 'http') await proxiedGet(proxy.port, `http://${NAME}:${bench.up.httpPort}/small`)
      else await tlsRequest(spec, ca, '/small')
      times.push(performance.now() - started)
    } catch (err) {
      errors.add(err)
    }
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99), errors }
}

async function slowloris(bench: Bench, scale: ProxyScale): Promise<ScenarioResult> {
  let i = 0
  const { proxy, baseline } = await freshProxy(bench, (p) =>
    i++ % 2 === 0
      ? proxiedGet(p.port, `http://${NAME}:${bench.up.httpPort}/small`)
      : tlsRequest(tunnelSpec(bench, p), bench.secureContext, '/small'),
  )
  try {
    const hello = await clientHelloPrefix(NAME)
    progress('slowloris: latency of new clients without slow connections')
    const before = {
      http: await probe('http', bench, proxy, scale),
      connect: await probe('connect', bench, proxy, scale),
    }

    progress(`slowloris: opening ${scale.slow} connections that never finish`)
    const ports = {
      http: proxy.port,
      socks: proxy.socksPort as number,
      tls: proxy.tlsPort as number,
      upstreamTls: bench.up.tlsPort,
    }
    const openedAt = Date.now()
    const closedBy = new Map<string, number[]>(SLOW_KINDS.map((k) => [k, []]))
    const held: { socket: net.Socket; kind: string }[] = []
    const openErrors = new Errors()
    let stopping = false
    await pool(Array.from({ length: scale.slow }), OPEN_CONCURRENCY, async (_, i) => {
      const kind = SLOW_KINDS[i % SLOW_KINDS.length] as (typeof SLOW_KINDS)[number]
      try {
        const socket = await openSlow(kind, ports, NAME, hello)
        socket.on('error', () => undefined)
        socket.once('close', () => {
          if (!stopping) closedBy.get(kind)?.push((Date.now() - openedAt) / 1000)
        })
        held.push({ socket, kind })
      } catch (err) {
        openErrors.add(err)
      }
    })
    const heldFds = fdCount(proxy.pid)
    progress(`slowloris: ${held.length} held (proxy fds ${heldFds}); latency of new clients now`)
    const during = {
      http: await probe('http', bench, proxy, scale),
      connect: await probe('connect', bench, proxy, scale),
    }
    const stillOpen = held.filter((h) => !h.socket.destroyed).length
    const probedFor = (Date.now() - openedAt) / 1000

    progress(
      `slowloris: waiting (up to ${DROP_WAIT_MS / 1000} s) for the proxy to drop the slow connections`,
    )
    const dropDeadline = openedAt + DROP_WAIT_MS
    while (held.some((h) => !h.socket.destroyed) && Date.now() < dropDeadline) await sleep(250)
    const neverDropped = new Map<string, number>()
    for (const h of held)
      if (!h.socket.destroyed) neverDropped.set(h.kind, (neverDropped.get(h.kind) ?? 0) + 1)
    stopping = true
    for (const h of held) h.socket.destroy()
    const settled = await settle(bench, proxy, baseline)
    const leaks = leakChecks(baseline, settled)
    const ms = (n: number): string => `${n.toFixed(1)} ms`
    const dropped = SLOW_KINDS.map((k) => {
      const times = closedBy.get(k) ?? []
      const left = neverDropped.get(k) ?? 0
      return [
        `dropped by the proxy: ${k}`,
        `${times.length}${times.length > 0 ? `, after ${Math.min(...times).toFixed(1)}–${Math.max(...times).toFixed(1)} s` : ''}${left > 0 ? `; ${left} still open after ${DROP_WAIT_MS / 1000} s` : ''}`,
      ] as Figure
    })
    return {
      name: 'slowloris',
      title: `${held.length} half-open connections (${SLOW_KINDS.join(', ')}) while new clients come (${scale.probes} each, one at a time)`,
      figures: [
        ['new HTTP clients p50 / p99, without', `${ms(before.http.p50)} / ${ms(before.http.p99)}`],
        ['new HTTP clients p50 / p99, with', `${ms(during.http.p50)} / ${ms(during.http.p99)}`],
        [
          'new CONNECT+TLS p50 / p99, without',
          `${ms(before.connect.p50)} / ${ms(before.connect.p99)}`,
        ],
        [
          'new CONNECT+TLS p50 / p99, with',
          `${ms(during.connect.p50)} / ${ms(during.connect.p99)}`,
        ],
        [
          'slow connections still held after the probes',
          `${stillOpen} (${probedFor.toFixed(1)} s after opening)`,
        ],
        ['proxy fds while held', heldFds],
        ...dropped,
        ...leaks.figures,
      ],
      checks: [
        check('every slow connection opened', openErrors.count === 0, openErrors.detail),
        check(
          'slow connections still held while probing',
          stillOpen === held.length,
          `${stillOpen} of ${held.length}`,
        ),
        check(
          `new HTTP clients p99 < ${SLOWLORIS_P99_GOAL_MS} ms while held`,
          during.http.p99 < SLOWLORIS_P99_GOAL_MS,
          ms(during.http.p99),
        ),
        check(
          `new CONNECT+TLS clients p99 < ${SLOWLORIS_P99_GOAL_MS} ms while held`,
          during.connect.p99 < SLOWLORIS_P99_GOAL_MS,
          ms(during.connect.p99),
        ),
        check(
          'no new client failed',
          before.http.errors.count +
            before.connect.errors.count +
            during.http.errors.count +
            during.connect.errors.count ===
            0,
          `${during.http.errors.detail}; ${during.connect.errors.detail}`,
        ),
        check(
          `the proxy dropped every slow connection within ${DROP_WAIT_MS / 1000} s`,
          neverDropped.size === 0,
          [...neverDropped].map(([k, n]) => `${k}: ${n} left`).join(', ') || 'all dropped',
        ),
        ...leaks.checks,
      ],
    }
  } finally {
    await proxy.stop()
  }
}

// ---------------------------------------------------------------- faults

async function faults(bench: Bench, scale: ProxyScale): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = []
  for (const kind of FAULT_KINDS) results.push(await fault(bench, kind, scale))
  return results
}

function faultTarget(bench: Bench, proxy: SoakProxy): Parameters<typeof runFault>[1] {
  return {
    proxyPort: proxy.port,
    httpUrl: `http://${NAME}:${bench.up.httpPort}/`,
    tunnel: tunnelSpec(bench, proxy),
    secureContext: bench.secureContext,
  }
}

async function fault(bench: Bench, kind: FaultKind, scale: ProxyScale): Promise<ScenarioResult> {
  const { proxy, baseline } = await freshProxy(bench, (p) =>
    runFault(kind, faultTarget(bench, p)).catch(() => undefined),
  )
  try {
    const target = faultTarget(bench, proxy)
    const outcomes = { cut: 0, completed: 0 }
    const errors = new Errors()
    const hung = new Errors()
    let done = 0
    let warmHeap: Promise<number> | undefined
    const tenth = Math.max(1, Math.floor(scale.reps / 10))
    const started = Date.now()
    await pool(Array.from({ length: scale.reps }), FAULT_CONCURRENCY, async () => {
      try {
        outcomes[await runFault(kind, target)]++
      } catch (err) {
        if (err instanceof OpError && err.kind === 'hung') hung.add(err)
        else errors.add(err)
      }
      done++
      if (done % tenth === 0) {
        // Memory after the first tenth (warm) against the end: growth is what leaks.
        if (done === tenth) warmHeap = heapAfterGc(proxy.inspectPort)
        progress(`faults: ${kind}: ${done}/${scale.reps}`)
      }
    })
    const seconds = (Date.now() - started) / 1000
    const settled = await settle(bench, proxy, baseline)
    const warmKiB = ((await warmHeap) ?? 0) / 1024
    const endKiB = settled.after.heapKiB ?? 0
    const growthKiB = endKiB - warmKiB
    const leaks = leakChecks(baseline, settled)
    // A reset upstream must cut the client off: a whole response would be a lie. (A client
    // that vanishes cuts itself off: nothing to check on its side.)
    const upstreamReset = kind.endsWith('upstream-reset')
    return {
      name: `faults/${kind}`,
      title: `${kind}: ${scale.reps.toLocaleString('en-US')} repetitions, ${FAULT_CONCURRENCY} at a time`,
      figures: [
        ['repetitions per second', Math.round(scale.reps / seconds)],
        ['client saw its response cut / whole', `${outcomes.cut} / ${outcomes.completed}`],
        ['proxy live heap after 10% / at the end', `${mib(warmKiB)} / ${mib(endKiB)} MiB`],
        [
          'live heap growth over the last 90%',
          `${(growthKiB / MiB).toFixed(2)} MiB (${((growthKiB * 1024) / (scale.reps * 0.9)).toFixed(0)} B per repetition)`,
        ],
        ...leaks.figures,
      ],
      checks: [
        check('no operation failed to start or errored', errors.count === 0, errors.detail),
        check('no client left hanging', hung.count === 0, hung.detail),
        ...(upstreamReset
          ? [
              check(
                'every client saw its transfer cut (never a whole response)',
                outcomes.completed === 0 && outcomes.cut === scale.reps,
                `${outcomes.cut} cut, ${outcomes.completed} whole`,
              ),
            ]
          : []),
        check(
          'the live heap does not grow with repetitions',
          growthKiB <= MiB,
          `${(growthKiB / MiB).toFixed(2)} MiB over ${Math.round(scale.reps * 0.9)} repetitions (1 MiB allowed)`,
        ),
        ...leaks.checks,
      ],
    }
  } finally {
    await proxy.stop()
  }
}

// ---------------------------------------------------------------- all

/** Runs the proxy scenarios asked for, on one set of upstreams; a fresh proxy each. */
export async function proxyScenarios(
  which: readonly ProxyScenario[],
  scale: ProxyScale,
): Promise<ScenarioResult[]> {
  const scratch = mkdtempSync(join(tmpdir(), 'isorun-bench-soak-'))
  const certs = makeCertificates(scratch, NAME)
  const up = await startUpstreamProcess(UPSTREAM, certs.cert, certs.key)
  const bench: Bench = {
    scratch,
    caFile: certs.ca,
    secureContext: tls.createSecureContext({ ca: readFileSync(certs.ca), minVersion: 'TLSv1.3' }),
    up,
  }
  const results: ScenarioResult[] = []
  try {
    if (which.includes('tunnels')) results.push(await tunnels(bench, scale))
    if (which.includes('slowloris')) results.push(await slowloris(bench, scale))
    if (which.includes('faults')) results.push(...(await faults(bench, scale)))
  } finally {
    up.stop()
    rmSync(scratch, { recursive: true, force: true })
  }
  return results
}
