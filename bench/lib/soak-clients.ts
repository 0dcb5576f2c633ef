// The soak benchmark's clients: long-lived keep-alive tunnels, one-shot
// requests whose latency is measured, clients that open a connection and stop
// half-way (slowloris), and the fault operations (an upstream that resets
// mid-transfer, a client that vanishes mid-transfer). Loopback only.

import net from 'node:net'
import tls from 'node:tls'
import { openTunnel, type LoadSpec } from './load.js'

const END = Buffer.from('\r\n\r\n')

/** Safety net for one operation: a proxy that never answers or never closes. */
export const OP_TIMEOUT_MS = 15_000

export class OpError extends Error {
  constructor(
    message: string,
    /** 'hung': nothing happened before OP_TIMEOUT_MS. */
    readonly kind: 'hung' | 'failed' = 'failed',
  ) {
    super(message)
  }
}

/**
 * Reads HTTP/1.1 responses with a Content-Length from a stream, one at a time:
 * `next()` resolves with the status line and body length of the next response.
 */
class ResponseReader {
  private buffered: Buffer = Buffer.alloc(0)
  private waiting: { resolve: (status: string) => void; reject: (err: Error) => void } | undefined
  private failed: Error | undefined

  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length > 0 ? Buffer.concat([this.buffered, chunk]) : chunk
      this.check()
    })
    const fail = (err: Error): void => {
      this.failed ??= err
      this.waiting?.reject(err)
      this.waiting = undefined
    }
    stream.on('error', (err: Error) => fail(err))
    stream.on('close', () => fail(new Error('connection closed')))
    stream.on('end', () => fail(new Error('connection ended by the other side')))
  }

  private check(): void {
    if (!this.waiting) return
    const end = this.buffered.indexOf(END)
    if (end < 0) return
    const head = this.buffered.subarray(0, end).toString('latin1')
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0)
    if (this.buffered.length < end + 4 + length) return
    this.buffered = this.buffered.subarray(end + 4 + length)
    const waiting = this.waiting
    this.waiting = undefined
    waiting.resolve(head.slice(0, head.indexOf('\r\n')))
  }

  next(): Promise<string> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject }
      this.check()
    })
  }
}

/** A CONNECT tunnel with TLS inside, kept alive for many small requests. */
export class KeepAliveTunnel {
  private constructor(
    private readonly socket: tls.TLSSocket,
    private readonly reader: ResponseReader,
    private readonly name: string,
  ) {}

  static async open(spec: LoadSpec, secureContext: tls.SecureContext): Promise<KeepAliveTunnel> {
    const raw = await openTunnel(spec)
    const socket = tls.connect({ socket: raw, servername: spec.name, secureContext })
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', () => resolve())
        socket.once('error', reject)
      }),
      () => socket.destroy(),
    )
    socket.setNoDelay(true)
    return new KeepAliveTunnel(socket, new ResponseReader(socket), spec.name)
  }

  async get(path: string): Promise<void> {
    const response = this.reader.next()
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${this.name}\r\n\r\n`)
    const status = await withTimeout(response, () => this.socket.destroy())
    if (!status.startsWith('HTTP/1.1 200')) throw new OpError(`unexpected response: ${status}`)
  }

  close(): void {
    this.socket.destroy()
  }
}

function withTimeout<T>(p: Promise<T>, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout()
      reject(new OpError(`no progress in ${OP_TIMEOUT_MS / 1000} s`, 'hung'))
    }, OP_TIMEOUT_MS)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Opens a TCP connection to 127.0.0.1:port. */
export function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true })
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/**
 * One plain-HTTP request through the proxy (absolute-form) on a fresh connection,
 * reading the whole response: the latency probe for "new clients are still served".
 */
export async function proxiedGet(proxyPort: number, url: string): Promise<void> {
  const socket = await dial(proxyPort)
  const reader = new ResponseReader(socket)
  const response = reader.next()
  const host = new URL(url).host
  socket.write(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  try {
    const status = await withTimeout(response, () => socket.destroy())
    if (!status.startsWith('HTTP/1.1 200')) throw new OpError(`unexpected response: ${status}`)
  } finally {
    socket.destroy()
  }
}

/** How a fault operation ended, seen from the client. */
export type FaultOutcome = 'cut' | 'completed'

/**
 * Asks for a response through the proxy, plain HTTP (absolute-form, kept alive) or a
 * CONNECT tunnel with TLS; `onData` sees every chunk and may end the connection. Resolves
 * when the connection is closed: 'cut' when the response did not arrive whole.
 */
async function transfer(
  how: { proxyPort: number; url: string } | { spec: LoadSpec; secureContext: tls.SecureContext },
  path: string,
  onData: (received: number, socket: net.Socket) => void,
): Promise<FaultOutcome> {
  let socket: net.Socket
  let stream: net.Socket
  let request: string
  if ('spec' in how) {
    socket = await openTunnel(how.spec)
    const secure = tls.connect({
      socket,
      servername: how.spec.name,
      secureContext: how.secureContext,
    })
    stream = secure
    request = `GET ${path} HTTP/1.1\r\nHost: ${how.spec.name}\r\n\r\n`
  } else {
    socket = await dial(how.proxyPort)
    stream = socket
    const url = new URL(path, how.url)
    request = `GET ${url.href} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`
  }
  let received = 0
  let expected = -1
  const closed = new Promise<void>((resolve) => {
    stream.on('error', () => undefined)
    socket.on('error', () => undefined)
    socket.once('close', () => resolve())
  })
  stream.on('data', (chunk: Buffer) => {
    received += chunk.length
    if (expected < 0) {
      const text = chunk.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text)
      if (end >= 0 && length) expected = end + 4 + Number(length[1])
    }
    onData(received, socket)
    // A whole response on a kept-alive connection: the client is done with it.
    if (expected >= 0 && received >= expected) socket.end()
  })
  if ('spec' in how) (stream as tls.TLSSocket).once('secureConnect', () => stream.write(request))
  else stream.write(request)
  await withTimeout(closed, () => socket.destroy())
  return expected >= 0 && received >= expected ? 'completed' : 'cut'
}

export type FaultKind =
  'tunnel-upstream-reset' | 'http-upstream-reset' | 'tunnel-client-vanish' | 'http-client-vanish'

export const FAULT_KINDS: readonly FaultKind[] = [
  'tunnel-upstream-reset',
  'http-upstream-reset',
  'tunnel-client-vanish',
  'http-client-vanish',
]

/** Bytes asked for per fault operation, and how much a vanishing client reads first. */
const FAULT_BYTES = 1024 * 1024
const VANISH_AFTER = 16 * 1024

/**
 * One fault: the upstream resets half-way through its response (the client must see
 * its connection closed, not hang), or the client resets its connection after the
 * first bytes of a large response (the proxy must close the upstream side).
 */
export function runFault(
  kind: FaultKind,
  target: {
    proxyPort: number
    httpUrl: string
    tunnel: LoadSpec
    secureContext: tls.SecureContext
  },
): Promise<FaultOutcome> {
  const http = { proxyPort: target.proxyPort, url: target.httpUrl }
  const tunnel = { spec: target.tunnel, secureContext: target.secureContext }
  const vanish = (received: number, socket: net.Socket): void => {
    if (received >= VANISH_AFTER && !socket.destroyed) socket.resetAndDestroy()
  }
  const wait = (): void => undefined
  switch (kind) {
    case 'tunnel-upstream-reset':
      return transfer(tunnel, `/reset/${FAULT_BYTES}`, wait)
    case 'http-upstream-reset':
      return transfer(http, `/reset/${FAULT_BYTES}`, wait)
    case 'tunnel-client-vanish':
      return transfer(tunnel, `/bulk/${FAULT_BYTES}`, vanish)
    case 'http-client-vanish':
      return transfer(http, `/bulk/${FAULT_BYTES}`, vanish)
  }
}

// ---------------------------------------------------------------- slowloris

export type SlowKind = 'http-head' | 'client-hello' | 'socks-greeting' | 'connect-then-hello'

export const SLOW_KINDS: readonly SlowKind[] = [
  'http-head',
  'client-hello',
  'socks-greeting',
  'connect-then-hello',
]

/** The first bytes of a real ClientHello for `name` (what Node's TLS client sends first). */
export function clientHelloPrefix(name: string, bytes = 120): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk.subarray(0, Math.min(bytes, chunk.length - 1)))
        socket.destroy()
        server.close()
      })
    })
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      const client = tls.connect({ host: '127.0.0.1', port, servername: name })
      client.on('error', () => undefined)
    })
    server.on('error', reject)
  })
}

/**
 * Opens a connection that starts a request and never finishes it. Resolves once the
 * partial bytes are written; the socket is the caller's to hold and to close. It reads
 * (and drops) whatever the proxy sends: a socket nobody reads never sees the proxy's
 * end of the connection.
 */
export async function openSlow(
  kind: SlowKind,
  ports: { http: number; socks: number; tls: number; upstreamTls: number },
  name: string,
  hello: Buffer,
): Promise<net.Socket> {
  const socket = await startSlow(kind, ports, name, hello)
  socket.resume()
  return socket
}

async function startSlow(
  kind: SlowKind,
  ports: { http: number; socks: number; tls: number; upstreamTls: number },
  name: string,
  hello: Buffer,
): Promise<net.Socket> {
  switch (kind) {
    case 'http-head': {
      const s = await dial(ports.http)
      s.write(`GET http://${name}/ HTTP/1.1\r\nHost: ${name}\r\nX-Slow: `)
      return s
    }
    case 'client-hello': {
      const s = await dial(ports.tls)
      s.write(hello)
      return s
    }
    case 'socks-greeting': {
      const s = await dial(ports.socks)
      s.write(Buffer.from([0x05, 0x02, 0x00])) // two methods announced, one sent
      return s
    }
    case 'connect-then-hello': {
      const s = await openTunnel({
        mode: 'churn',
        proxy: { host: '127.0.0.1', port: ports.http },
        upstream: { host: '127.0.0.1', port: ports.upstreamTls },
        name,
      })
      s.write(hello)
      return s
    }
  }
}
