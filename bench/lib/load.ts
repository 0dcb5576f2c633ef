// The benchmark's load generators, run as a child process of bench/proxy.ts so
// that their CPU is never counted as the proxy's. Loopback only; every load is
// bounded (a duration or a byte count) and ends by itself.
//
//   node load.js '<json LoadSpec>'  ->  one JSON LoadResult line on stdout
//
//   keepalive  small GETs over N keep-alive connections (absolute-form through an
//              HTTP proxy, origin-form direct); the fallback when wrk is missing
//   churn      tunnels at concurrency N: CONNECT, TLS handshake through it, one
//              small request, close (direct: TLS handshake, request, close)
//   bulk       one tunnel, then a large download over TLS

import { readFileSync } from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface LoadSpec {
  /**
   * churn-cold: churn with a new name per tunnel (the proxy's DNS cache and, when it
   * intercepts, its leaf-certificate cache miss every time); bulk-h2: bulk with h2
   * offered in ALPN (spoken where the other end takes it, HTTP/1.1 otherwise).
   */
  readonly mode: 'keepalive' | 'churn' | 'churn-cold' | 'bulk' | 'bulk-h2'
  /** The proxy to go through; absent for direct access. */
  readonly proxy?: Endpoint
  /** Where the connection goes: an IP address, dialled directly when there is no proxy. */
  readonly upstream: Endpoint
  /** The name the proxy is asked for (and the TLS server name). */
  readonly name: string
  readonly concurrency?: number
  readonly durationMs?: number
  readonly bytes?: number
  /** PEM file of the CA that signed the TLS upstream's certificate. */
  readonly caFile?: string
}

export interface LoadResult {
  readonly ops: number
  readonly seconds: number
  readonly bytes: number
  readonly errors: number
  readonly firstError?: string
}

const END = Buffer.from('\r\n\r\n')
const TUNNEL_TIMEOUT_MS = 10_000

class Tally {
  ops = 0
  bytes = 0
  errors = 0
  firstError: string | undefined
  fail(err: unknown): void {
    this.errors++
    this.firstError ??= err instanceof Error ? err.message : String(err)
  }
}

/** Small GETs over `concurrency` keep-alive connections, one request in flight on each. */
function keepAlive(spec: LoadSpec, tally: Tally, deadline: number): Promise<void> {
  const authority = `${spec.name}:${spec.upstream.port}`
  const request = Buffer.from(
    spec.proxy
      ? `GET http://${authority}/small HTTP/1.1\r\nHost: ${authority}\r\n\r\n`
      : `GET /small HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
  )
  const dial = spec.proxy ?? spec.upstream
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ host: dial.host, port: dial.port, noDelay: true })
      let buffered: Buffer = Buffer.alloc(0)
      let bodyLeft = -1 // -1: reading a head
      const finish = (err?: unknown): void => {
        if (err) tally.fail(err)
        socket.destroy()
        resolve()
      }
      const send = (): void => {
        if (Date.now() >= deadline) finish()
        else socket.write(request)
      }
      socket.on('connect', send)
      socket.on('error', finish)
      socket.on('end', () => finish(new Error('connection closed by the server')))
      socket.on('data', (chunk: Buffer) => {
        buffered = buffered.length > 0 ? Buffer.concat([buffered, chunk]) : chunk
        for (;;) {
          if (bodyLeft < 0) {
            const end = buffered.indexOf(END)
            if (end < 0) return
            const head = buffered.subarray(0, end).toString('latin1')
            if (!head.startsWith('HTTP/1.1 200')) return finish(new Error(head.split('\r\n')[0]))
            const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
            if (!length) return finish(new Error('response without Content-Length'))
            bodyLeft = Number(length[1])
            buffered = buffered.subarray(end + 4)
          }
          if (buffered.length < bodyLeft) return
          buffered = buffered.subarray(bodyLeft)
          bodyLeft = -1
          tally.ops++
          send()
          if (socket.destroyed) return
        }
      })
    })
  return Promise.all(Array.from({ length: spec.concurrency ?? 8 }, one)).then(() => undefined)
}

/** A socket that CONNECT has opened to the target, or a plain connection when there is no proxy. */
export function openTunnel(spec: LoadSpec): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const proxy = spec.proxy as Endpoint
    const socket = net.connect({ host: proxy.host, port: proxy.port, noDelay: true })
    const authority = `${spec.name}:${spec.upstream.port}`
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf(END)
      if (end < 0) return
      socket.off('data', onData)
      socket.off('error', onError)
      const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1')
      if (!/^HTTP\/1\.[01] 200/.test(status)) {
        socket.destroy()
        reject(new Error(`CONNECT refused: ${status}`))
        return
      }
      socket.pause()
      if (end + 4 < head.length) socket.unshift(head.subarray(end + 4))
      resolve(socket)
    }
    const onError = (err: Error): void => reject(err)
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('connect', () =>
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`),
    )
  })
}

/** TLS to the upstream (through a tunnel when there is a proxy), one GET, the whole response. */
export async function tlsRequest(
  spec: LoadSpec,
  secureContext: tls.SecureContext,
  path: string,
  onBytes?: (n: number) => void,
): Promise<Buffer | undefined> {
  // One shared SecureContext: passing `ca` to every tls.connect would build a new one per tunnel (ms of CPU).
  const base = { servername: spec.name, secureContext }
  const raw = spec.proxy ? await openTunnel(spec) : undefined
  return new Promise((resolve, reject) => {
    const socket = raw
      ? tls.connect({ ...base, socket: raw })
      : tls.connect({ ...base, host: spec.upstream.host, port: spec.upstream.port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('tunnel timed out'))
    }, TUNNEL_TIMEOUT_MS)
    const chunks: Buffer[] = []
    socket.on('secureConnect', () => {
      socket.setNoDelay(true)
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${spec.name}\r\nConnection: close\r\n\r\n`)
    })
    socket.on('data', (chunk: Buffer) => {
      if (onBytes) onBytes(chunk.length)
      else chunks.push(chunk)
    })
    socket.on('end', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(onBytes ? undefined : Buffer.concat(chunks))
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      socket.destroy()
      raw?.destroy()
      reject(err)
    })
    // After 'end' or 'error' this is a no-op: the promise is already settled.
    socket.on('close', () => {
      clearTimeout(timer)
      reject(new Error('connection closed before the response ended'))
    })
  })
}

function clientContext(spec: LoadSpec): tls.SecureContext {
  return tls.createSecureContext({ ca: readFileSync(spec.caFile as string), minVersion: 'TLSv1.3' })
}

async function churn(spec: LoadSpec, tally: Tally, deadline: number, cold = false): Promise<void> {
  const ca = clientContext(spec)
  let n = 0
  const run = Date.now().toString(36)
  const worker = async (): Promise<void> => {
    while (Date.now() < deadline) {
      try {
        const name = cold ? `c${run}-${n++}.${spec.name}` : spec.name
        const response = (await tlsRequest({ ...spec, name }, ca, '/small')) as Buffer
        if (!response.subarray(0, 12).equals(Buffer.from('HTTP/1.1 200')))
          throw new Error(`unexpected response: ${response.subarray(0, 40).toString('latin1')}`)
        tally.ops++
      } catch (err) {
        tally.fail(err)
        if (tally.errors > 100) return
      }
    }
  }
  await Promise.all(Array.from({ length: spec.concurrency ?? 16 }, worker))
}

async function bulk(spec: LoadSpec, tally: Tally): Promise<void> {
  const ca = clientContext(spec)
  const want = spec.bytes ?? 256 * 1024 * 1024
  await tlsRequest(spec, ca, `/bulk/${want}`, (n) => (tally.bytes += n))
  if (tally.bytes < want) throw new Error(`short download: ${tally.bytes} of ${want} bytes`)
  tally.ops = 1
}

/** Bulk with h2 offered: over h2 where the other end (an intercepting proxy) takes it. */
async function bulkH2(spec: LoadSpec, tally: Tally): Promise<void> {
  const want = spec.bytes ?? 256 * 1024 * 1024
  const raw = spec.proxy ? await openTunnel(spec) : undefined
  const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const options = {
      servername: spec.name,
      ca: readFileSync(spec.caFile as string),
      ALPNProtocols: ['h2', 'http/1.1'],
    }
    const socket = raw
      ? tls.connect({ ...options, socket: raw })
      : tls.connect({ ...options, host: spec.upstream.host, port: spec.upstream.port })
    socket.once('secureConnect', () => resolve(socket))
    socket.once('error', reject)
  })
  if (secure.alpnProtocol !== 'h2') {
    secure.destroy()
    return bulk(spec, tally)
  }
  const session = http2.connect(`https://${spec.name}`, { createConnection: () => secure })
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = session.request({ ':path': `/bulk/${want}`, ':authority': spec.name })
      stream.on('data', (chunk: Buffer) => (tally.bytes += chunk.length))
      stream.on('end', () => resolve())
      stream.on('error', reject)
      stream.end()
    })
  } finally {
    session.close()
  }
  if (tally.bytes < want) throw new Error(`short download: ${tally.bytes} of ${want} bytes`)
  tally.ops = 1
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const tally = new Tally()
  const start = process.hrtime.bigint()
  const deadline = Date.now() + (spec.durationMs ?? 5000)
  try {
    if (spec.mode === 'keepalive') await keepAlive(spec, tally, deadline)
    else if (spec.mode === 'churn') await churn(spec, tally, deadline)
    else if (spec.mode === 'churn-cold') await churn(spec, tally, deadline, true)
    else if (spec.mode === 'bulk-h2') await bulkH2(spec, tally)
    else await bulk(spec, tally)
  } catch (err) {
    tally.fail(err)
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  return {
    ops: tally.ops,
    seconds,
    bytes: tally.bytes,
    errors: tally.errors,
    ...(tally.firstError ? { firstError: tally.firstError } : {}),
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
  void runLoad(spec).then((result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    // Hard cap: never let a stuck socket keep the child alive.
    process.exit(0)
  })
}
