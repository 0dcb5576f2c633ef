// Upstream servers for the proxy's integration tests, all on 127.0.0.1 with
// ephemeral ports: a plain HTTP echo (which also speaks WebSocket), a TLS echo
// whose certificate covers the test names, and a raw TCP server that speaks
// first like SSH. Each one counts its connections, so a test can tell whether
// the proxy dialled it, and the HTTP echo records which Host headers each
// upstream socket carried.

import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { testCerts } from './certs.js'
import { acceptKey, decodeFrame, encodeText } from './websocket.js'

export interface Upstream {
  readonly port: number
  /** Connections accepted so far. */
  connections(): number
  close(): Promise<void>
}

/** What the HTTP and TLS echo servers answer with (JSON). */
export interface EchoBody {
  readonly server: string
  /** The upstream socket that served the request, numbered from 1 per server. */
  readonly socket: number
  readonly method: string
  readonly url: string
  readonly headers: Record<string, string>
  /** Header names exactly as received, in order. */
  readonly rawHeaderNames: string[]
  readonly body: string
  /** TLS only: the server name the client sent. */
  readonly servername?: string
}

export interface HttpEcho extends Upstream {
  /** Host names (Host headers without port) seen on each upstream socket, by socket number. */
  hostsBySocket(): Map<number, Set<string>>
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
}

function track(server: net.Server, event = 'connection') {
  const sockets = new Set<net.Socket>()
  const ids = new WeakMap<net.Socket, number>()
  let count = 0
  server.on(event, (socket: net.Socket) => {
    count++
    ids.set(socket, count)
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return { sockets, ids, count: () => count }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString()))
    req.on('error', reject)
  })
}

/**
 * Answers every request with an EchoBody. `GET /hop-headers` also sends
 * hop-by-hop and Proxy-* response headers that a proxy must not pass on.
 * Upgrades to WebSocket answer each text frame with `echo:<text>`.
 */
export async function startHttpEcho(name = 'http-echo'): Promise<HttpEcho> {
  const hosts = new Map<number, Set<string>>()
  const server = http.createServer({ keepAliveTimeout: 30_000 })
  const { sockets, ids, count } = track(server)
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    void readBody(req).then((body) => {
      const id = ids.get(req.socket) ?? 0
      const seen = hosts.get(id) ?? new Set<string>()
      // The name only (a client may or may not add the port): reuse across names is what matters.
      seen.add((req.headers.host ?? '').replace(/:\d+$/, '').replace(/\.$/, '').toLowerCase())
      hosts.set(id, seen)
      const echo: EchoBody = {
        server: name,
        socket: id,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: Object.fromEntries(
          Object.entries(req.headers).map(([k, v]) => [
            k,
            Array.isArray(v) ? v.join(', ') : (v ?? ''),
          ]),
        ),
        rawHeaderNames: req.rawHeaders.filter((_, i) => i % 2 === 0),
        body,
      }
      const text = JSON.stringify(echo)
      const headers: http.OutgoingHttpHeaders = {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(text),
      }
      if (req.url === '/hop-headers') {
        Object.assign(headers, {
          Connection: 'X-Upstream-Secret',
          'X-Upstream-Secret': 'must-not-pass',
          'Keep-Alive': 'timeout=999',
          'Proxy-Authenticate': 'Basic realm="upstream"',
          'Proxy-Connection': 'keep-alive',
          'Proxy-Authentication-Info': 'nextnonce="abc"',
          'X-Upstream-Ok': 'passes',
        })
      }
      res.writeHead(200, headers)
      res.end(text)
    })
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const key = req.headers['sec-websocket-key']
    if (req.headers.upgrade?.toLowerCase() !== 'websocket' || typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      return
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nX-Echo-Host: ${req.headers.host ?? ''}\r\nX-Echo-Proxy-Authorization: ${req.headers['proxy-authorization'] ?? 'absent'}\r\n\r\n`,
    )
    let buffered = head
    const pump = (): void => {
      for (;;) {
        const frame = decodeFrame(buffered)
        if (!frame) return
        buffered = buffered.subarray(frame.length)
        if (frame.opcode === 0x8) {
          socket.end(Buffer.from([0x88, 0x00]))
          return
        }
        socket.write(encodeText(`echo:${frame.text}`, false))
      }
    }
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      pump()
    })
    // Like real WebSocket servers: the peer is gone, so are we (the HTTP server allows half-open).
    socket.on('end', () => socket.end())
    pump()
  })
  const port = await listen(server)
  return {
    port,
    connections: count,
    hostsBySocket: () => hosts,
    close: closer(server, sockets),
  }
}

/** HTTPS with the test certificate; answers with an EchoBody that includes the SNI it saw. */
export async function startTlsEcho(name = 'tls-echo'): Promise<Upstream> {
  const certs = await testCerts()
  const server = https.createServer({ cert: certs.cert, key: certs.key, keepAliveTimeout: 5000 })
  // Count TCP connections, not TLS handshakes: a refused tunnel may never complete one.
  const { sockets, count } = track(server)
  const { ids } = track(server, 'secureConnection')
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    void readBody(req).then((body) => {
      const tlsSocket = req.socket as net.Socket & { servername?: string | false }
      const echo: EchoBody = {
        server: name,
        socket: ids.get(req.socket) ?? 0,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: Object.fromEntries(
          Object.entries(req.headers).map(([k, v]) => [
            k,
            Array.isArray(v) ? v.join(', ') : (v ?? ''),
          ]),
        ),
        rawHeaderNames: req.rawHeaders.filter((_, i) => i % 2 === 0),
        body,
        servername: tlsSocket.servername || '',
      }
      const text = JSON.stringify(echo)
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(text),
      })
      res.end(text)
    })
  })
  server.on('tlsClientError', () => undefined)
  const port = await listen(server)
  return { port, connections: count, close: closer(server, sockets) }
}

export const BANNER = 'SSH-2.0-isorun_test_banner\r\n'

/** Speaks first like an SSH server, then echoes what it gets, prefixed with `echo:`. */
export async function startBannerServer(): Promise<Upstream> {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy())
    socket.write(BANNER)
    socket.on('data', (chunk: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), chunk])))
  })
  const { sockets, count } = track(server)
  const port = await listen(server)
  return { port, connections: count, close: closer(server, sockets) }
}

/** The loopback upstreams the proxy tests dial, started and closed together. */
export interface Upstreams {
  /** HTTPS echo with the test certificate (its SNI seen is in the echo). */
  readonly tls: Upstream
  /** HTTP echo, also a WebSocket echo. */
  readonly http: HttpEcho
  /** A server that speaks first, like SSH. */
  readonly banner: Upstream
  close(): Promise<void>
}

/** Starts the TLS echo, the HTTP echo and the banner server on 127.0.0.1. */
export async function startUpstreams(): Promise<Upstreams> {
  const [tlsEcho, httpEcho, banner] = await Promise.all([
    startTlsEcho(),
    startHttpEcho(),
    startBannerServer(),
  ])
  return {
    tls: tlsEcho,
    http: httpEcho,
    banner,
    close: async () => {
      await Promise.all([tlsEcho.close(), httpEcho.close(), banner.close()])
    },
  }
}
