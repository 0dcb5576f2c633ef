// HTTP/2 inside intercepted TLS (the client negotiated h2): Node's HTTP/2
// server reads the frames, and every stream is one request for the forwarder,
// decided, logged and answered on its own. A refusal is a stream-level 403;
// the connection carries on. What HTTP/2 adds to check before the forwarder
// sees a request: the :authority and any Host must both name the checked host
// (connection coalescing and domain fronting), and CONNECT (plain or
// extended, RFC 8441) is refused: it would open a tunnel inside the tunnel.

import http2 from 'node:http2'
import type http from 'node:http'
import type net from 'node:net'
import type { ProxyContext, TunnelTarget } from '../context.js'
import { Exchange } from '../exchange.js'
import { guard } from '../guard.js'
import type { HttpForwarder } from '../http-forward.js'
import type { ForwardMode } from '../http-target.js'
import type { Decision } from '../../policy/index.js'
import { refusalHeaders, refusalText } from '../refusal.js'

type TunnelMode = ForwardMode & { kind: 'tunnel' }

/**
 * Streams one client may have open on a connection (SETTINGS_MAX_CONCURRENT_STREAMS;
 * past it, nghttp2 refuses a new stream with REFUSED_STREAM). Node's default is
 * 2^32-1: 20,000 streams to an origin that did not answer made the proxy hold
 * ~170 MB, as pipelining did on HTTP/1.1 before MAX_WAITING_REQUESTS.
 */
export const MAX_CONCURRENT_STREAMS = 100

interface Connection {
  readonly mode: TunnelMode
  /** The decrypted client socket, for the client's address. */
  readonly socket: net.Socket
}

export interface H2Server {
  /** Serves HTTP/2 on a TLS socket the proxy terminated for `target`. */
  handOff(socket: net.Socket, target: TunnelTarget): void
  close(): void
}

export function createH2Server(ctx: ProxyContext, forwarder: HttpForwarder): H2Server {
  const server = http2.createServer({
    // Bounds on what one client can make the proxy hold, as for HTTP/1.1 heads.
    maxHeaderListPairs: 256,
    maxSessionMemory: 10,
    settings: { enableConnectProtocol: false, maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
  })
  server.setTimeout(ctx.timeouts.idleMs)
  const connections = new WeakMap<http2.Http2Session, Connection>()
  /** The connection being handed over: the server makes its session synchronously. */
  let arriving: Connection | undefined
  server.on('session', (session: http2.ServerHttp2Session) => {
    if (arriving) connections.set(session, arriving)
    session.on('error', () => session.destroy())
  })
  server.on('sessionError', () => undefined)
  const onStream = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void => {
    const connection = connections.get(req.stream.session as http2.Http2Session)
    if (!connection) return void res.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
    serveStream(ctx, forwarder, connection, req, res)
  }
  server.on('request', onStream)
  // Node's compatibility API hands CONNECT streams to 'connect' (405 without a listener):
  // refused and logged like every other request.
  server.on('connect', onStream)
  return {
    handOff(socket, target) {
      arriving = { mode: { kind: 'tunnel', ...target, intercepted: true }, socket }
      try {
        server.emit('connection', socket)
      } finally {
        arriving = undefined
      }
    },
    close: () => server.close(),
  }
}

function serveStream(
  ctx: ProxyContext,
  forwarder: HttpForwarder,
  { mode, socket }: Connection,
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
): void {
  const exchange = new Exchange(ctx, mode.protocol, socket)
  exchange.target = { host: mode.host, port: mode.port }
  exchange.inherit(mode.approved)
  const headers = req.headers
  const method = headers[':method'] ?? ''
  exchange.method = method
  if (method === 'CONNECT') {
    const decision = exchange.decide({ ...requestOf(mode), payload: 'other' })
    exchange.fail('CONNECT inside an intercepted HTTP/2 connection')
    exchange.end()
    return refuseStream(res, decision, exchange.policy.name)
  }
  const authority = headers[':authority']
  const host = headers.host
  if (authority !== undefined && host !== undefined && authority !== host) {
    // Both must name the checked host: decide() reads the Host and the other authority.
    const decision = exchange.decide({
      ...requestOf(mode),
      method,
      path: headers[':path'] ?? '',
      hostHeader: host,
      targetAuthority: authority,
    })
    if (decision.action === 'deny') {
      exchange.path = headers[':path']
      exchange.end()
      return refuseStream(res, decision, exchange.policy.name)
    }
  }
  // The forwarder reads the target from Host, as for HTTP/1.1 (and checks it names the target).
  if (authority !== undefined) headers.host = authority
  const compat = req as unknown as http.IncomingMessage
  const handled = forwarder.handleRequest(
    compat,
    res as unknown as http.ServerResponse,
    mode,
    exchange,
  )
  guard(ctx, exchange, () => res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), handled)
}

function requestOf(mode: TunnelMode): {
  protocol: TunnelMode['protocol']
  host: string
  port: number
} {
  return { protocol: mode.protocol, host: mode.host, port: mode.port }
}

/** A stream-level 403 in the style of every refusal; the connection carries on (no Connection header). */
function refuseStream(res: http2.Http2ServerResponse, decision: Decision, profile: string): void {
  const body = refusalText(decision, profile)
  const { Connection: _connection, ...headers } = refusalHeaders(body)
  res.writeHead(403, headers)
  res.end(body)
}
