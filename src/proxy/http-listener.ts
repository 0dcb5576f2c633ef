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
import { splitAuthority, type TunnelPayload } from '../policy/index.js'
import type { ProxyContext, TunnelTarget } from './context.js'
import { Exchange } from './exchange.js'
import { guard } from './guard.js'
import type { HttpForwarder } from './http-forward.js'
import type { ForwardMode } from './http-target.js'
import {
  badRequestResponse,
  budgetRefusalResponse,
  refusalResponse,
  upstreamFailureResponse,
} from './refusal.js'
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
    const target = targetOf(socket)
    const exchange = new Exchange(ctx, target.protocol, socket)
    const decision = exchange.decide({ ...target, payload })
    exchange.fail(`${err.code}: ${err.message}`)
    exchange.end()
    if (socket.writable && !pending.get(socket))
      closeGracefully(socket, refusalResponse(decision, exchange.policy.name, 400))
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
  const named = parseConnectAuthority(authority)
  if (!named) return badRequest(socket, `CONNECT needs host:port, got "${authority}"`)
  const exchange = new Exchange(ctx, 'connect', socket)
  const tunnel = runTunnel(ctx, {
    client: socket,
    initial: head,
    exchange,
    target: {
      kind: 'named',
      host: named.host,
      port: named.port,
      accept: () => socket.write(CONNECT_ESTABLISHED),
      refuse: (refusal) => {
        if (refusal.kind === 'policy')
          closeGracefully(socket, refusalResponse(refusal.decision, refusal.profile))
        else if (refusal.kind === 'budget')
          closeGracefully(
            socket,
            budgetRefusalResponse(refusal.decision, refusal.budget, refusal.profile),
          )
        else
          closeGracefully(
            socket,
            upstreamFailureResponse(
              refusal.error.kind === 'timeout' ? 504 : 502,
              refusal.error.message,
            ),
          )
      },
    },
  })
  guard(ctx, exchange, () => socket.destroy(), tunnel)
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
 * else goes to the HTTP server with what was read put back. The head's deadline
 * is kept by the sweeper, not a timer of its own.
 */
class FrontDoor implements Sweepable {
  /** The first bytes, while too few to tell CONNECT from anything else. */
  private prefix: Buffer | undefined
  /** Reads the head once the bytes said CONNECT. */
  private reader: HttpHeadReader | undefined
  private readonly startedAt = Date.now()

  constructor(
    private readonly ctx: ProxyContext,
    private readonly socket: net.Socket,
    private readonly server: http.Server,
  ) {
    ctx.sweeper.add(this)
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('error', this.onError)
    socket.resume()
  }

  sweep(now: number): void {
    if (now < this.startedAt + this.ctx.timeouts.headMs) return
    this.finish()
    badRequest(this.socket, 'no complete request head in time')
  }

  private finish(): void {
    this.ctx.sweeper.delete(this)
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.off('error', this.onError)
    this.socket.pause()
  }

  private readonly onError = (): void => {
    this.finish()
    this.socket.destroy()
  }

  private readonly onEnd = (): void => {
    this.finish()
    if (this.prefix || this.reader)
      badRequest(this.socket, 'the connection ended inside a request head')
    else closeGracefully(this.socket)
  }

  private readonly onData = (chunk: Buffer): void => {
    const data = this.reader ? chunk : this.sortOut(chunk)
    if (data) this.readHead(data)
  }

  /** Before the bytes said CONNECT: what to read as its head, or undefined (handed over, or too few). */
  private sortOut(chunk: Buffer): Buffer | undefined {
    const data = this.prefix ? Buffer.concat([this.prefix, chunk]) : chunk
    const n = Math.min(data.length, CONNECT_PREFIX.length)
    if (data.compare(CONNECT_PREFIX, 0, n, 0, n) !== 0) {
      // Not CONNECT: the HTTP server's, from the first byte.
      this.finish()
      this.socket.unshift(data)
      this.server.emit('connection', this.socket)
      this.socket.resume()
      return undefined
    }
    this.prefix = n < CONNECT_PREFIX.length ? data : undefined
    if (this.prefix) return undefined
    this.reader = new HttpHeadReader()
    return data
  }

  private readHead(data: Buffer): void {
    let reading: ReturnType<HttpHeadReader['push']>
    try {
      reading = (this.reader as HttpHeadReader).push(data)
    } catch (err) {
      if (!(err instanceof HttpHeadError)) throw err
      this.finish()
      return badRequest(this.socket, err.message)
    }
    if (!reading) return
    this.finish()
    this.socket.on('error', () => this.socket.destroy())
    const head = connectAuthority(reading.head)
    if ('error' in head) return badRequest(this.socket, head.error)
    // Bytes after the head are the tunnel's (a client may send its ClientHello at once).
    connectTunnel(this.ctx, this.socket, head.authority, reading.rest)
  }
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
  forwardRequests(ctx, httpServer, forwarder, () => mode)
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
      new FrontDoor(ctx, socket, httpServer)
    },
  )
  return { server, closeHttp: () => httpServer.close() }
}

/**
 * Hands a server's requests and upgrades to the forwarder, each as an exchange of
 * its own under the data-path guard. `modeOf`: how its connections' requests are
 * read (undefined: the connection is not one of its own, and is closed).
 */
function forwardRequests(
  ctx: ProxyContext,
  server: http.Server,
  forwarder: HttpForwarder,
  modeOf: (socket: net.Socket) => ForwardMode | undefined,
): void {
  const protocolOf = (mode: ForwardMode): Exchange['protocol'] =>
    mode.kind === 'tunnel' ? mode.protocol : 'http'
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const mode = modeOf(req.socket)
    if (!mode) return res.destroy()
    const exchange = new Exchange(ctx, protocolOf(mode), req.socket)
    if (mode.kind === 'tunnel') exchange.inherit(mode.approved)
    guard(ctx, exchange, () => res.destroy(), forwarder.handleRequest(req, res, mode, exchange))
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const mode = modeOf(socket)
    if (!mode) return socket.destroy()
    const exchange = new Exchange(ctx, protocolOf(mode), socket)
    if (mode.kind === 'tunnel') exchange.inherit(mode.approved)
    const upgrade = forwarder.handleUpgrade(req, socket, head, mode, exchange)
    guard(ctx, exchange, () => socket.destroy(), upgrade)
  })
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
  forwardRequests(ctx, server, forwarder, () => mode)
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
  const server = createServer(
    ctx,
    (socket) => modes.get(socket) ?? { protocol: 'http', host: '', port: 0 },
  )
  forwardRequests(ctx, server, forwarder, (socket) => modes.get(socket))
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
