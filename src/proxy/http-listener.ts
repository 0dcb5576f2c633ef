// The HTTP listeners: the explicit HTTP proxy (absolute-form requests,
// CONNECT tunnels, upgrades) and the transparent plain-HTTP listener that DNS
// steering sends port-80 traffic to (origin-form requests named by Host).

import http from 'node:http'
import type net from 'node:net'
import type { ProxyContext, TunnelTarget } from './context.js'
import { HttpForwarder, type ForwardMode } from './http-forward.js'
import { refusalResponse, upstreamFailureResponse } from './refusal.js'
import { endAndClose, runTunnel } from './tunnel.js'

/** `host:port` or `[v6]:port` from a CONNECT request target. */
export function parseConnectAuthority(text: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/@\s]+):([0-9]{1,5})$/.exec(text)
  if (!m) return undefined
  const port = Number(m[2])
  if (port < 1 || port > 65535) return undefined
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port }
}

function badRequest(socket: net.Socket, message: string): void {
  const body = `isorun: bad request: ${message}\n`
  endAndClose(
    socket,
    `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
}

function createServer(ctx: ProxyContext): http.Server {
  const server = http.createServer({
    // Strict parsing (no lenient mode) keeps request smuggling out; the limits
    // bound what one client can make the proxy hold.
    insecureHTTPParser: false,
    maxHeaderSize: 32 * 1024,
    requestTimeout: 5 * 60_000,
    headersTimeout: 30_000,
    keepAliveTimeout: 30_000,
    noDelay: true,
  })
  server.on('connection', (socket: net.Socket) => ctx.tracker.add(socket))
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    // Malformed HTTP from a client: answer 400 when the socket can still take it, never crash.
    if (socket.writable && err.code !== 'ECONNRESET')
      badRequest(socket, err.code ?? 'malformed request')
    else socket.destroy()
  })
  return server
}

export function createHttpProxyServer(ctx: ProxyContext, forwarder: HttpForwarder): http.Server {
  const server = createServer(ctx)
  const mode: ForwardMode = { kind: 'proxy' }
  server.on(
    'request',
    (req, res) => void forwarder.handleRequest(req, res, mode).catch(() => res.destroy()),
  )
  server.on(
    'upgrade',
    (req, socket: net.Socket, head: Buffer) =>
      void forwarder.handleUpgrade(req, socket, head, mode).catch(() => socket.destroy()),
  )
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const target = parseConnectAuthority(req.url ?? '')
    if (!target) return badRequest(socket, `CONNECT needs host:port, got "${req.url ?? ''}"`)
    void runTunnel(ctx, {
      protocol: 'connect',
      client: socket,
      host: target.host,
      port: target.port,
      initial: head,
      accept: () => socket.write('HTTP/1.1 200 Connection Established\r\n\r\n'),
      refuse: (refusal) => {
        if (refusal.kind === 'policy')
          endAndClose(socket, refusalResponse(refusal.decision, refusal.profile))
        else
          endAndClose(
            socket,
            upstreamFailureResponse(
              refusal.error.kind === 'timeout' ? 504 : 502,
              refusal.error.message,
            ),
          )
      },
    }).catch(() => socket.destroy())
  })
  return server
}

/** `targetPort` is the destination port decisions are made for (80 when steered by DNS). */
export function createTransparentHttpServer(
  ctx: ProxyContext,
  forwarder: HttpForwarder,
  targetPort: () => number,
): http.Server {
  const server = createServer(ctx)
  const mode: ForwardMode = { kind: 'transparent', port: targetPort }
  server.on(
    'request',
    (req, res) => void forwarder.handleRequest(req, res, mode).catch(() => res.destroy()),
  )
  server.on(
    'upgrade',
    (req, socket: net.Socket, head: Buffer) =>
      void forwarder.handleUpgrade(req, socket, head, mode).catch(() => socket.destroy()),
  )
  server.on('connect', (_req, socket: net.Socket) =>
    badRequest(socket, 'CONNECT is served on the HTTP proxy port, not here'),
  )
  return server
}

/**
 * Plain HTTP that arrives inside a CONNECT or SOCKS tunnel is served here
 * rather than spliced, so a second request on the tunnel cannot name another
 * host unseen. The server never listens: tunnels are handed to it.
 */
export function createTunnelHttpServer(
  ctx: ProxyContext,
  forwarder: HttpForwarder,
): {
  server: http.Server
  handOff: (socket: net.Socket, buffered: Buffer, target: TunnelTarget) => void
} {
  const server = createServer(ctx)
  const modes = new WeakMap<net.Socket, ForwardMode>()
  const modeOf = (socket: net.Socket): ForwardMode | undefined => modes.get(socket)
  server.on('request', (req, res) => {
    const mode = modeOf(req.socket)
    if (!mode) return res.destroy()
    void forwarder.handleRequest(req, res, mode).catch(() => res.destroy())
  })
  server.on('upgrade', (req, socket: net.Socket, head: Buffer) => {
    const mode = modeOf(socket)
    if (!mode) return socket.destroy()
    void forwarder.handleUpgrade(req, socket, head, mode).catch(() => socket.destroy())
  })
  server.on('connect', (_req, socket: net.Socket) =>
    badRequest(socket, 'CONNECT inside a tunnel is not supported'),
  )
  return {
    server,
    handOff: (socket, buffered, target) => {
      modes.set(socket, { kind: 'tunnel', ...target })
      if (buffered.length > 0) socket.unshift(buffered)
      server.emit('connection', socket)
      socket.resume()
    },
  }
}
