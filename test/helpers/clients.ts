// Node clients for the proxy tests: a raw TCP client that records everything it
// gets, plain HTTP through the proxy (absolute form), HTTPS through CONNECT
// (http.request CONNECT, then tls.connect over the tunnel), and a raw SOCKS5
// handshake.

import http from 'node:http'
import net from 'node:net'
import { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'

export interface HttpResult {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/** A raw TCP client that collects everything it receives. */
export class RawClient {
  data: Buffer = Buffer.alloc(0)
  ended = false
  closed = false
  private readonly waiters = new Set<() => void>()

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk])
      this.notify()
    })
    socket.on('end', () => {
      this.ended = true
      this.notify()
    })
    socket.on('close', () => {
      this.closed = true
      this.notify()
    })
    socket.on('error', () => undefined)
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host })
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve(new RawClient(socket))
      })
      socket.once('error', reject)
    })
  }

  get text(): string {
    return this.data.toString('latin1')
  }

  write(data: string | Buffer): void {
    this.socket.write(data)
  }

  private notify(): void {
    for (const w of [...this.waiters]) w()
  }

  /** Waits until `pred(data)` holds; rejects after `timeoutMs`, or if the socket closes first. */
  waitFor(pred: (data: Buffer) => boolean, timeoutMs = 20_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (pred(this.data)) {
          done()
          resolve(this.data)
        } else if (this.closed) {
          done()
          reject(new Error(`closed before the expected data; got ${JSON.stringify(this.text)}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out; got ${JSON.stringify(this.text)}`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      this.waiters.add(check)
      check()
    })
  }

  waitForText(text: string, timeoutMs?: number): Promise<Buffer> {
    return this.waitFor((d) => d.includes(text), timeoutMs)
  }

  /** Resolves once the peer has closed (FIN or reset); rejects after `timeoutMs`. */
  waitForClose(timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!this.closed && !this.ended) return
        clearTimeout(timer)
        this.waiters.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error(`still open after ${timeoutMs} ms; got ${JSON.stringify(this.text)}`))
      }, timeoutMs)
      this.waiters.add(check)
      check()
    })
  }

  destroy(): void {
    this.socket.destroy()
  }
}

/** Splits raw HTTP/1.x responses (Content-Length framed) out of a byte stream. */
export function parseResponses(data: Buffer): HttpResult[] {
  const out: HttpResult[] = []
  let rest = data
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) return out
    const head = rest.subarray(0, end).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1])
    const headers: http.IncomingHttpHeaders = {}
    for (const line of head.slice(1)) {
      const i = line.indexOf(':')
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
    }
    const length = Number(headers['content-length'] ?? NaN)
    if (Number.isNaN(length)) {
      out.push({ status, headers, body: rest.subarray(end + 4).toString() })
      return out
    }
    if (rest.length < end + 4 + length) return out
    out.push({ status, headers, body: rest.subarray(end + 4, end + 4 + length).toString() })
    rest = rest.subarray(end + 4 + length)
  }
}

/** The CONNECT response's status, and the HTTP responses that came through the tunnel after it. */
export function tunnelResponses(data: Buffer): { connectStatus: number; responses: HttpResult[] } {
  const end = data.indexOf('\r\n\r\n')
  const head = data.subarray(0, Math.max(end, 0)).toString('latin1')
  const connectStatus = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
  return { connectStatus, responses: end < 0 ? [] : parseResponses(data.subarray(end + 4)) }
}

/** One absolute-form request through the HTTP proxy with Node's http client. */
export function httpViaProxy(
  proxyPort: number,
  url: string,
  opts: {
    method?: string
    headers?: http.OutgoingHttpHeaders
    body?: string
    agent?: http.Agent | false
  } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const target = new URL(url)
    const req = http.request({
      host: '127.0.0.1',
      port: proxyPort,
      method: opts.method ?? 'GET',
      path: url,
      headers: { Host: target.host, ...opts.headers },
      agent: opts.agent ?? false,
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

export interface TunnelResult {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  /** The tunnel socket, when the proxy answered 200. */
  readonly socket: net.Socket
  /** The body the proxy sent with a refusal (read until the proxy closed). */
  readonly body: string
}

/** `CONNECT authority` with Node's http client; on a refusal, reads the body until close. */
export function openTunnel(proxyPort: number, authority: string): Promise<TunnelResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxyPort,
      method: 'CONNECT',
      path: authority,
      headers: { Host: authority },
      agent: false,
    })
    req.on('connect', (res: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      socket.on('error', () => undefined)
      if (head.length > 0) socket.unshift(head)
      if (res.statusCode === 200) {
        resolve({ status: 200, headers: res.headers, socket, body: '' })
        return
      }
      // Node hands over the socket right after the head; the body follows on it.
      const chunks: Buffer[] = []
      socket.on('data', (c: Buffer) => chunks.push(c))
      socket.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          socket,
          body: Buffer.concat(chunks).toString(),
        }),
      )
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * TLS over an open tunnel (or any socket): handshake with `servername` (none
 * when undefined), send one GET, read the response until the server closes.
 */
export function tlsGet(
  socket: Duplex,
  opts: { servername?: string; ca: Buffer; hostHeader: string; path?: string },
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      ca: opts.ca,
      ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
      // Without SNI Node would check the certificate against "localhost"; the
      // tests that send no SNI check the refusal, not the certificate.
      ...(opts.servername === undefined ? { checkServerIdentity: () => undefined } : {}),
    })
    const chunks: Buffer[] = []
    secure.on('secureConnect', () => {
      secure.write(
        `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${opts.hostHeader}\r\nConnection: close\r\n\r\n`,
      )
    })
    secure.on('data', (c: Buffer) => chunks.push(c))
    secure.on('end', () => {
      const [first] = parseResponses(Buffer.concat(chunks))
      if (first) resolve(first)
      else reject(new Error(`no HTTP response over TLS: ${Buffer.concat(chunks).toString()}`))
    })
    secure.on('error', reject)
  })
}

/**
 * A duplex over `socket` whose first write (the ClientHello) goes out one byte
 * per TCP segment with a pause between bytes; later writes pass through.
 * Optionally re-frames the first handshake record into TLS records of
 * `recordSize` bytes of payload first.
 */
export function slowStart(
  socket: net.Socket,
  opts: { delayMs?: number; recordSize?: number } = {},
): Duplex {
  socket.setNoDelay(true)
  let first = true
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, callback) {
      if (!first) {
        socket.write(chunk, callback)
        return
      }
      first = false
      const bytes = opts.recordSize ? reframe(chunk, opts.recordSize) : chunk
      void (async () => {
        for (const b of bytes) {
          socket.write(Buffer.from([b]))
          await sleep(opts.delayMs ?? 1)
        }
        callback()
      })().catch(callback)
    },
    read() {
      socket.resume()
    },
    final(callback) {
      socket.end(callback)
    },
    destroy(err, callback) {
      socket.destroy()
      callback(err)
    },
  })
  socket.on('data', (c: Buffer) => {
    if (!duplex.push(c)) socket.pause()
  })
  socket.on('end', () => duplex.push(null))
  socket.on('error', (err) => duplex.destroy(err))
  socket.on('close', () => duplex.destroy())
  return duplex
}

/** Splits the first TLS record of `data` into records of at most `size` payload bytes. */
export function reframe(data: Buffer, size: number): Buffer {
  const type = data[0] as number
  const version = data.readUInt16BE(1)
  const length = data.readUInt16BE(3)
  const payload = data.subarray(5, 5 + length)
  const parts: Buffer[] = []
  for (let i = 0; i < payload.length; i += size) {
    const piece = payload.subarray(i, i + size)
    const header = Buffer.alloc(5)
    header[0] = type
    header.writeUInt16BE(version, 1)
    header.writeUInt16BE(piece.length, 3)
    parts.push(header, piece)
  }
  parts.push(data.subarray(5 + length))
  return Buffer.concat(parts)
}

/** SOCKS5 greeting (no auth) plus a request; `host` as a domain unless `atyp` says otherwise. */
export function socksRequest(
  host: string,
  port: number,
  opts: { command?: number; atyp?: 'domain' | 'ipv4' } = {},
): Buffer {
  const portBytes = Buffer.alloc(2)
  portBytes.writeUInt16BE(port)
  const address =
    opts.atyp === 'ipv4'
      ? Buffer.from([0x01, ...host.split('.').map(Number)])
      : Buffer.concat([Buffer.from([0x03, Buffer.byteLength(host)]), Buffer.from(host)])
  return Buffer.concat([
    Buffer.from([0x05, 0x01, 0x00]),
    Buffer.from([0x05, opts.command ?? 0x01, 0x00]),
    address,
    portBytes,
  ])
}

/**
 * Runs a SOCKS5 handshake on a raw client; resolves with the reply code
 * (byte 1 of the reply that follows the 2-byte method selection).
 */
export async function socksHandshake(
  client: RawClient,
  host: string,
  port: number,
  opts: { command?: number; atyp?: 'domain' | 'ipv4' } = {},
): Promise<number> {
  client.write(socksRequest(host, port, opts))
  await client.waitFor((d) => d.length >= 2 + 10)
  return client.data[3] as number
}

/**
 * A SOCKS5 CONNECT on a fresh socket. Resolves with the reply code and, on
 * success (0x00), the socket ready for the tunnel's bytes (paused, with
 * anything that came after the reply put back).
 */
export function socksConnect(
  proxyPort: number,
  host: string,
  port: number,
  opts: { atyp?: 'domain' | 'ipv4' } = {},
): Promise<{ code: number; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: proxyPort })
    socket.setNoDelay(true)
    let data = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk])
      if (data.length < 12) return
      socket.off('data', onData)
      socket.off('error', reject)
      socket.pause()
      const rest = data.subarray(12)
      if (rest.length > 0) socket.unshift(rest)
      resolve({ code: data[3] as number, socket })
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`closed after ${data.length} reply bytes`)))
    socket.write(socksRequest(host, port, opts))
  })
}

/**
 * A raw tunnel through the proxy: CONNECT on the HTTP proxy port or SOCKS5 on
 * the SOCKS port, to `host:port`. Resolves once the proxy said "go ahead", with
 * the client's data holding only what came through the tunnel after that.
 */
export async function rawTunnel(
  via: 'connect' | 'socks',
  proxyPort: number,
  host: string,
  port: number,
): Promise<RawClient> {
  const client = await RawClient.connect(proxyPort)
  if (via === 'connect') {
    client.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`)
    const data = await client.waitForText('\r\n\r\n')
    const head = data.toString('latin1', 0, data.indexOf('\r\n\r\n'))
    if (!/^HTTP\/1\.1 200 /.test(head)) throw new Error(`CONNECT refused: ${head}`)
    client.data = data.subarray(data.indexOf('\r\n\r\n') + 4)
  } else {
    client.write(socksRequest(host, port))
    const data = await client.waitFor((d) => d.length >= 12)
    if (data[1] !== 0x00 || data[3] !== 0x00) throw new Error(`SOCKS refused: reply ${data[3]}`)
    client.data = data.subarray(12)
  }
  return client
}
