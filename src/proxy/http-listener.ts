// The HTTP listeners: the explicit HTTP proxy (absolute-form requests,
// CONNECT tunnels, upgrades) and the transparent plain-HTTP listener that DNS
// steering sends port-80 traffic to (origin-form requests named by Host).
//
// The HTTP proxy port is a plain TCP server that reads a CONNECT head itself
// (strictly, bounded in size and time) and hands every other connection, with
// the bytes it read, to Node's HTTP server. A tunnel then never passes through
// the HTTP server's parser, request and response objects and timers, which
// cost about a fifth of a tunnel's CPU.

import http from 'node:http'
import net from 'node:net'
import { decide, splitAuthority, type TunnelPayload } from '../policy/index.js'
import { clientAddress, record, type ProxyContext, type TunnelTarget } from './context.js'
import type { HttpForwarder, ForwardMode } from './http-forward.js'
import { badRequestResponse, refusalResponse, upstreamFailureResponse } from './refusal.js'
import type { Sweepable } from './sweeper.js'
import { runTunnel } from './tunnel.js'
import {
  closeGracefully,
  HttpHeadError,
  HttpHeadReader,
  MAX_HEAD_BYTES,
  rawResponse,
  type HttpHead,
} from './wire.js'

/**
 * How often an HTTP server checks its connections against headersTimeout and
 * requestTimeout. Node's default, 30 s, let a partial head hold a connection for
 * up to twice the timeout; the check walks only the connections still reading a
 * request, so once a second costs nothing.
 */
export const CONNECTIONS_CHECK_MS = 1000
const CONNECT_PREFIX = Buffer.from('CONNECT ', 'latin1')
// The authority is visible ASCII: a CR, LF, NUL or 8-bit byte in it is as malformed as in a header line.
const CONNECT_LINE = /^CONNECT ([!-~]+) HTTP\/1\.[01]$/
const CONNECT_ESTABLISHED = Buffer.from(
  rawResponse(200, {}, '', 'Connection Established'),
  'latin1',
)

/** `host:port` or `[v6]:port` from a CONNECT request target. */
export function parseConnectAuthority(text: string): { host: string; port: number } | undefined {
  const authority = splitAuthority(text)
  if (authority?.port === undefined || authority.port < 1) return undefined
  return { host: authority.host, port: authority.port }
}

function badRequest(socket: net.Socket, message: string): void {
  closeGracefully(socket, badRequestResponse(message))
}

/** Whom a connection of an HTTP server talks to, for the decision on what it sent. */
type TargetOf = (socket: net.Socket) => Pick<TunnelTarget, 'host' | 'port'> & {
  readonly protocol: TunnelTarget['protocol'] | 'http'
}

/** What a parse error of Node's HTTP parser says the client sent, or undefined for no decision. */
function unreadablePayload(code: string | undefined): TunnelPayload | undefined {
  if (code === 'HPE_PAUSED_H2_UPGRADE') return 'h2-prior-knowledge' // "PRI * HTTP/2.0"
  // A head cut short by the client's own hang-up asked for nothing.
  if (code === undefined || !code.startsWith('HPE_') || code === 'HPE_INVALID_EOF_STATE')
    return undefined
  return 'other'
}

/**
 * An HTTP server for connections handed to it (it never listens itself).
 * `tracked`: the connections were counted where they were accepted.
 * `targetOf`: whom its connections talk to, for the decision on what it cannot read.
 */
function createServer(ctx: ProxyContext, targetOf: TargetOf, tracked = false): http.Server {
  const server = http.createServer({
    // Strict parsing (no lenient mode) keeps request smuggling out: what Node's parser
    // cannot read is refused, and what it reads is written again by the forwarder. The
    // limits bound what one client can make the proxy hold.
    insecureHTTPParser: false,
    maxHeaderSize: MAX_HEAD_BYTES,
    requestTimeout: 5 * 60_000,
    headersTimeout: ctx.timeouts.headMs,
    keepAliveTimeout: 30_000,
    connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
    // HTTP/1.0 and 1.1 without Host are decided like the rest: the forwarder names the
    // target in the Host it sends, or refuses when nothing names one.
    requireHostHeader: false,
    noDelay: true,
  })
  if (!tracked) server.on('connection', (socket: net.Socket) => ctx.tracker.add(socket))
  // Requests whose responses are still to be written, per connection: an answer to a later,
  // malformed request must not be taken by the client for the answer to an earlier one.
  const pending = new WeakMap<net.Socket, number>()
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket
    pending.set(socket, (pending.get(socket) ?? 0) + 1)
    res.once('close', () => pending.set(socket, (pending.get(socket) ?? 1) - 1))
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    // Malformed HTTP from a client: refused and logged, never forwarded, never a crash.
    const payload = unreadablePayload(err.code)
    if (payload === undefined) {
      if (socket.writable && err.code !== 'ECONNRESET' && !pending.get(socket))
        badRequest(socket, err.code ?? 'malformed request')
      else socket.destroy()
      return
    }
    const startedAt = performance.now()
    const policy = ctx.policy.current
    const target = targetOf(socket)
    const decision = decide({ ...target, payload }, policy)
    record(ctx, {
      policy,
      protocol: target.protocol,
      decision,
      client: clientAddress(socket),
      startedAt,
      error: `${err.code}: ${err.message}`,
    })
    if (socket.writable && !pending.get(socket))
      closeGracefully(socket, refusalResponse(decision, policy.name, 400))
    else socket.destroy()
  })
  return server
}

/** Starts a CONNECT tunnel to `authority` on a client socket whose head has been read. */
function connectTunnel(
  ctx: ProxyContext,
  socket: net.Socket,
  authority: string,
  head: Buffer,
): void {
  const target = parseConnectAuthority(authority)
  if (!target) return badRequest(socket, `CONNECT needs host:port, got "${authority}"`)
  void runTunnel(ctx, {
    protocol: 'connect',
    client: socket,
    host: target.host,
    port: target.port,
    initial: head,
    accept: () => socket.write(CONNECT_ESTABLISHED),
    refuse: (refusal) => {
      if (refusal.kind === 'policy')
        closeGracefully(socket, refusalResponse(refusal.decision, refusal.profile))
      else
        closeGracefully(
          socket,
          upstreamFailureResponse(
            refusal.error.kind === 'timeout' ? 504 : 502,
            refusal.error.message,
          ),
        )
    },
  }).catch(() => socket.destroy())
}

/** The authority a CONNECT head names, or why it is not a CONNECT request line. */
function connectAuthority(head: HttpHead): { authority: string } | { error: string } {
  const m = CONNECT_LINE.exec(head.startLine)
  return m ? { authority: m[1] as string } : { error: 'malformed CONNECT request line' }
}

/**
 * The request line and header lines of a CONNECT head (without its final blank
 * line), read by the one head reader: the authority it names, or why it is
 * malformed. Lines end in CRLF; a bare CR or LF, a folded line or a control
 * character is malformed.
 */
export function parseConnectHead(text: string): { authority: string } | { error: string } {
  let reading: ReturnType<HttpHeadReader['push']>
  try {
    reading = new HttpHeadReader().push(Buffer.from(`${text}\r\n\r\n`, 'latin1'))
  } catch (err) {
    if (err instanceof HttpHeadError) return { error: err.message }
    throw err
  }
  // A blank line inside: what follows it would be another head.
  if (!reading || reading.rest.length > 0) return { error: 'malformed header line' }
  return connectAuthority(reading.head)
}

/**
 * Reads a new connection's first bytes: a CONNECT head is served here, anything
 * else goes to `server` with what was read put back.
 */
function frontDoor(ctx: ProxyContext, socket: net.Socket, server: http.Server): void {
  /** The first bytes, while too few to tell CONNECT from anything else. */
  let prefix: Buffer | undefined
  let reader: HttpHeadReader | undefined
  const startedAt = Date.now()
  const deadline: Sweepable = {
    sweep: (now) => {
      if (now < startedAt + ctx.timeouts.headMs) return
      finish()
      badRequest(socket, 'no complete request head in time')
    },
  }
  const onError = (): void => {
    finish()
    socket.destroy()
  }
  const finish = (): void => {
    ctx.sweeper.delete(deadline)
    socket.off('data', onData)
    socket.off('end', onEnd)
    socket.off('error', onError)
    socket.pause()
  }
  const onEnd = (): void => {
    finish()
    if (prefix || reader) badRequest(socket, 'the connection ended inside a request head')
    else closeGracefully(socket)
  }
  const onData = (chunk: Buffer): void => {
    let data = chunk
    if (!reader) {
      data = prefix ? Buffer.concat([prefix, chunk]) : chunk
      const n = Math.min(data.length, CONNECT_PREFIX.length)
      if (data.compare(CONNECT_PREFIX, 0, n, 0, n) !== 0) {
        // Not CONNECT: the HTTP server's, from the first byte.
        finish()
        socket.unshift(data)
        server.emit('connection', socket)
        socket.resume()
        return
      }
      if (n < CONNECT_PREFIX.length) {
        prefix = data
        return
      }
      prefix = undefined
      reader = new HttpHeadReader()
    }
    let reading: ReturnType<HttpHeadReader['push']>
    try {
      reading = reader.push(data)
    } catch (err) {
      if (!(err instanceof HttpHeadError)) throw err
      finish()
      return badRequest(socket, err.message)
    }
    if (!reading) return
    finish()
    socket.on('error', () => socket.destroy())
    const head = connectAuthority(reading.head)
    if ('error' in head) return badRequest(socket, head.error)
    // Bytes after the head are the tunnel's (a client may send its ClientHello at once).
    connectTunnel(ctx, socket, head.authority, reading.rest)
  }
  ctx.sweeper.add(deadline)
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('error', onError)
  socket.resume()
}

/** The HTTP proxy port: CONNECT tunnels, and absolute-form requests and upgrades. */
export interface HttpProxyServer {
  /** The listening socket server. */
  readonly server: net.Server
  /** Stops the HTTP server behind it (its idle kept-alive connections close); call with server.close(). */
  closeHttp(): void
}

export function createHttpProxyServer(
  ctx: ProxyContext,
  forwarder: HttpForwarder,
): HttpProxyServer {
  // A malformed request names no target: decided with none (refused, as unreadable).
  const httpServer = createServer(ctx, () => ({ protocol: 'http', host: '', port: 0 }), true)
  const mode: ForwardMode = { kind: 'proxy' }
  httpServer.on(
    'request',
    (req, res) => void forwarder.handleRequest(req, res, mode).catch(() => res.destroy()),
  )
  httpServer.on(
    'upgrade',
    (req, socket: net.Socket, head: Buffer) =>
      void forwarder.handleUpgrade(req, socket, head, mode).catch(() => socket.destroy()),
  )
  // CONNECT after other requests on a kept-alive connection.
  httpServer.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    connectTunnel(ctx, socket, req.url ?? '', head)
  })
  startTimeouts(httpServer)
  const server = net.createServer(
    // As the HTTP server's own sockets: half-open allowed (it ends them itself), no Nagle delay.
    { allowHalfOpen: true, noDelay: true, pauseOnConnect: true },
    (socket) => {
      ctx.tracker.add(socket)
      frontDoor(ctx, socket, httpServer)
    },
  )
  return { server, closeHttp: () => httpServer.close() }
}

/**
 * An HTTP server that never listens enforces headersTimeout and requestTimeout only
 * once told it is listening: that starts its periodic check of the connections
 * handed to it.
 */
function startTimeouts(server: http.Server): void {
  server.emit('listening')
}

/** `targetPort` is the destination port decisions are made for (80 when steered by DNS). */
export function createTransparentHttpServer(
  ctx: ProxyContext,
  forwarder: HttpForwarder,
  targetPort: () => number,
): http.Server {
  const server = createServer(ctx, () => ({ protocol: 'http', host: '', port: targetPort() }))
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
 * Whatever is not TLS inside a CONNECT or SOCKS tunnel without a tcp: rule is
 * served here rather than spliced: every request on the tunnel is read by
 * Node's parser, decided on its own (its Host and any absolute URI must name
 * the tunnel's target) and written again by the forwarder; what the parser
 * cannot read is refused. The server never listens: tunnels are handed to it.
 */
export function createTunnelHttpServer(
  ctx: ProxyContext,
  forwarder: HttpForwarder,
): {
  server: http.Server
  handOff: (socket: net.Socket, buffered: Buffer, target: TunnelTarget) => void
} {
  const modes = new WeakMap<net.Socket, ForwardMode & { kind: 'tunnel' }>()
  const modeOf = (socket: net.Socket): ForwardMode | undefined => modes.get(socket)
  const server = createServer(
    ctx,
    (socket) => modes.get(socket) ?? { protocol: 'http', host: '', port: 0 },
  )
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
  startTimeouts(server)
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
