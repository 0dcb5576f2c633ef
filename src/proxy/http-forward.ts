// Plain-HTTP forwarding for absolute-form proxy requests, the transparent HTTP
// listener and plain HTTP inside tunnels: the relay that serves request by
// request. Each request passes the same stages as a tunnel:
//
//   target   parsed from the request (http-target.ts)
//   decide   by name, before any lookup; then resolve and decide its addresses
//   hold     a decision marked `ask` waits for an approval (nothing is sent meanwhile)
//   budget   an allowed request whose budget is used up gets a 429; one that runs
//            past it while it flows is cut (accounting.ts)
//   dial     a pooled upstream connection per host, port and checked address,
//            so one is never reused for another host (origin-pools.ts)
//   relay    the request written again by undici, the response streamed back
//   log      the exchange's one line when the response ends, or at the refusal
//
// The client side is Node's strict HTTP server; the upstream side is undici
// (the Node.js project's HTTP client), which replaced http-proxy: that package
// is unmaintained, stripped headers too late (a crash under load, leaked
// Proxy-* headers with Expect), and cost about twice the CPU per request.
// WebSocket upgrades go to http-upgrade.ts once approved.

import http from 'node:http'
import type net from 'node:net'
import { Readable } from 'node:stream'
import type { Dispatcher, Pool } from 'undici'
import { joinAuthority, requestPath, type Decision, type EgressRequest } from '../policy/index.js'
import { admitWithinBudget, meterFor, releaseAdmission, type BudgetMeter } from './accounting.js'
import type { BudgetUsage } from './budgets.js'
import type { ProxyContext } from './context.js'
import type { Exchange } from './exchange.js'
import { holdClient } from './hold.js'
import { endToEndHeaders, upstreamRequestHeaders } from './http-headers.js'
import {
  BadProxyRequest,
  hostHeaderOf,
  targetOf,
  type ForwardMode,
  type ForwardTarget,
} from './http-target.js'
import { relayUpgrade, websocketKeyOf } from './http-upgrade.js'
import {
  isCertificateError,
  upstreamCertificateAnswer,
  upstreamCertificateRefusal,
  upstreamTlsFor,
} from './intercept/upstream-certificate.js'
import { withSecrets } from './intercept/secrets.js'
import { OriginPools } from './origin-pools.js'
import { UpstreamGate } from './upstream-gate.js'
import {
  badRequestResponse,
  budgetRefusalReply,
  plainHeaders,
  refusalHeaders,
  refusalText,
} from './refusal.js'
import { RequestTurn } from './request-turn.js'
import {
  addressesWithoutLookup,
  describeUpstream,
  parentCredentials,
  resolveUpstream,
  UpstreamError,
} from './upstream.js'
import { closeGracefully, rawResponse } from './wire.js'

/** What approve() concluded about a request. */
export type Approval =
  | {
      readonly kind: 'approved'
      readonly target: ForwardTarget
      /** The checked addresses; undefined when the parent proxy resolves the name. */
      readonly addresses: string[] | undefined
    }
  /** decide() refused it: 403. */
  | { readonly kind: 'refused'; readonly decision: Decision }
  /** Allowed, but its budget is used up (`decision` is the budget-exceeded refusal): 429. */
  | { readonly kind: 'over-budget'; readonly decision: Decision; readonly budget: BudgetUsage }
  /** The proxy cannot read whom it is for: 400. */
  | { readonly kind: 'bad-request'; readonly message: string }
  /** Allowed, but its name did not resolve: 502, or 504 when the lookup timed out. */
  | { readonly kind: 'unresolved'; readonly error: UpstreamError }

interface Answer {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

/** The hold stage of one request: waits for the answer to an `ask` decision. */
type Hold = (decision: Decision) => Promise<Decision>

/** The response to a request that was not approved; each closes its connection. */
function answerTo(approval: Exclude<Approval, { kind: 'approved' }>, profile: string): Answer {
  let body: string
  switch (approval.kind) {
    case 'refused':
      body = refusalText(approval.decision, profile)
      return { status: 403, headers: refusalHeaders(body), body }
    case 'over-budget':
      return budgetRefusalReply(approval.decision, approval.budget, profile)
    case 'bad-request':
      body = `isorun: bad request: ${approval.message}\n`
      return { status: 400, headers: plainHeaders(body), body }
    case 'unresolved':
      body = `isorun: ${approval.error.message}\n`
      return {
        status: approval.error.kind === 'timeout' ? 504 : 502,
        headers: plainHeaders(body),
        body,
      }
  }
}

/** Bytes of a request head as the client sent it, for the log's bytes up. */
function requestHeadBytes(req: http.IncomingMessage): number {
  let n = (req.method?.length ?? 0) + (req.url?.length ?? 0) + 13 // "M U HTTP/1.1\r\n"
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    n += (req.rawHeaders[i] as string).length + (req.rawHeaders[i + 1] as string).length + 4
  }
  return n + 2
}

/** An HTTP/2 request (intercepted TLS that negotiated h2), served by Node's compatibility API. */
function isHttp2(req: http.IncomingMessage): boolean {
  return req.httpVersionMajor === 2
}

/**
 * Response headers the client's protocol can carry: HTTP/2 has no Connection
 * header (a refusal there is a stream-level answer; the connection carries on).
 */
function headersFor(
  req: http.IncomingMessage,
  headers: Record<string, string>,
): Record<string, string> {
  if (!isHttp2(req)) return headers
  const { Connection: _connection, ...rest } = headers
  return rest
}

function hasBody(req: http.IncomingMessage): boolean {
  // An HTTP/2 request has a body unless its HEADERS frame ended the stream (no length needed).
  if (isHttp2(req))
    return !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * The request body as undici reads it, counting bytes for the log; under a
 * budget, nothing past it is read on: the request is cut there.
 */
async function* countedBody(
  req: http.IncomingMessage,
  count: (n: number) => void,
  meter: BudgetMeter | undefined,
): AsyncGenerator<Buffer> {
  for await (const chunk of req as AsyncIterable<Buffer>) {
    const allowed = meter ? meter.up(chunk.length) : chunk.length
    count(allowed)
    if (allowed < chunk.length) {
      if (allowed > 0) yield chunk.subarray(0, allowed)
      throw new Error(meter?.exceeded ?? 'budget exceeded')
    }
    yield chunk
  }
}

function isTimeout(err: Error & { code?: string }): boolean {
  return /TIMEOUT/i.test(err.code ?? '') || err.name === 'ConnectTimeoutError'
}

export class HttpForwarder {
  private readonly pools: OriginPools

  constructor(private readonly ctx: ProxyContext) {
    this.pools = new OriginPools(ctx)
  }

  close(): void {
    this.pools.destroy()
  }

  /**
   * The target, decisions and checked addresses of a request: by name before any
   * lookup, then by the addresses found. `upgrade`: the protocol an upgrade request
   * asks for (on any other request, Upgrade is a hop-by-hop header and never forwarded).
   * Answers at once unless a lookup is needed: a refusal must be known before the
   * requests pipelined behind it are read.
   */
  private approve(
    req: http.IncomingMessage,
    mode: ForwardMode,
    exchange: Exchange,
    hold: Hold,
    upgrade?: string,
  ): Approval | Promise<Approval> {
    let asked: ReturnType<typeof targetOf>
    try {
      asked = targetOf(req, mode, upgrade)
    } catch (err) {
      if (!(err instanceof BadProxyRequest)) throw err
      return { kind: 'bad-request', message: err.message }
    }
    const { target, request } = asked
    exchange.target = target
    exchange.method = request.method
    // Inside intercepted TLS the log has the path without the query string: the client
    // chose encryption, and queries carry tokens. (Plain HTTP logs what crossed in clear.)
    exchange.path =
      mode.kind === 'tunnel' && mode.intercepted ? requestPath(target.path) : target.path
    const addresses = addressesWithoutLookup(this.ctx, target.host)
    const checked = { exchange, request, target, hold }
    if (addresses) return this.decideAddresses(checked, addresses)
    const byName = exchange.decide(request)
    if (byName.ask) return hold(byName).then((answered) => this.resolveAllowed(checked, answered))
    return this.resolveAllowed(checked, byName)
  }

  /** Resolves a target allowed by name (after its hold, if it was held), then decides its addresses. */
  private resolveAllowed(checked: Checked, byName: Decision): Approval | Promise<Approval> {
    const { exchange, target } = checked
    if (byName.action === 'deny') return { kind: 'refused', decision: byName }
    return resolveUpstream(this.ctx, target.host).then(
      (found) => this.decideAddresses(checked, found),
      (err: unknown) => {
        if (!(err instanceof UpstreamError)) throw err
        exchange.fail(err.message)
        return { kind: 'unresolved', error: err }
      },
    )
  }

  /** The decision on a target's checked addresses (undefined: the parent proxy resolves it). */
  private decideAddresses(
    checked: Checked,
    addresses: string[] | undefined,
  ): Approval | Promise<Approval> {
    const { exchange, request, hold } = checked
    const decision = exchange.decide(addresses ? { ...request, resolved: addresses } : request)
    if (decision.ask)
      return hold(decision).then((answered) => this.approvalOf(checked, answered, addresses))
    return this.approvalOf(checked, decision, addresses)
  }

  /** An allowed request is approved while its budget has room. */
  private approvalOf(
    { exchange, target }: Checked,
    decision: Decision,
    addresses: string[] | undefined,
  ): Approval {
    if (decision.action !== 'allow') return { kind: 'refused', decision }
    const over = admitWithinBudget(this.ctx, exchange)
    if (over)
      return { kind: 'over-budget', decision: exchange.decision as Decision, budget: over.budget }
    return { kind: 'approved', target, addresses }
  }

  async handleRequest(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    mode: ForwardMode,
    exchange: Exchange,
  ): Promise<void> {
    const turn = new RequestTurn(req, res, exchange)
    // Behind a refusal, or on a connection closed for flooding: neither decided nor sent.
    if (turn.behindRefusal() || turn.left()) return
    const hold: Hold = (decision) => exchange.hold(decision, turn.signal)
    const approving = this.approve(req, mode, exchange, hold)
    const approval = approving instanceof Promise ? await approving : approving
    if (approval.kind !== 'approved') return this.answerUnapproved(turn, approval)
    turn.forward()
    exchange.address = describeUpstream(this.ctx, approval.addresses?.[0])
    const headBytes = requestHeadBytes(req)
    const meter = meterFor(this.ctx, exchange)
    let bodyBytes = 0
    // Kept: Node lets go of req.socket once the response has finished.
    const socket = req.socket
    const writtenBefore = socket.bytesWritten
    // HTTP/2 streams share their connection: the response body is what this request sent down.
    exchange.countBytesWith(() => ({
      up: headBytes + bodyBytes,
      down: isHttp2(req) ? turn.bodyBytesDown : socket.bytesWritten - writtenBefore,
    }))
    const pooled = this.poolFor(approval, mode)
    const pool = pooled instanceof Promise ? await pooled : pooled
    const turnComes = turn.turnComes()
    if (turnComes) await turnComes
    if (turn.left() || turn.behindRefusal()) {
      // Left, or refused a request before this one, while this one was decided or waited
      // for its turn: nothing is sent.
      exchange.fail('the client closed the connection before the request was sent')
      releaseAdmission(this.ctx, exchange)
      return exchange.end()
    }
    // Its request was charged when it was admitted; the head is its first bytes up.
    if (meter && meter.up(headBytes) < headBytes) return this.answerCut(turn, meter)
    const body = hasBody(req)
      ? Readable.from(countedBody(req, (n) => (bodyBytes += n), meter))
      : null
    this.dispatch(turn, approval, pool, body, mode, meter)
  }

  /**
   * Answers a request its budget cut before the response started: the 429 of a
   * request refused at its start (the connection closes after it), or, once the
   * response has started, a cut connection.
   */
  private answerCut(turn: RequestTurn, meter: BudgetMeter): void {
    const { res } = turn
    const reply = meter.refusalReply()
    turn.refused()
    if (!res.headersSent && reply) {
      res.writeHead(reply.status, reply.headers)
      return void res.end(reply.body)
    }
    // The response up to the limit is flushed, and ends short with its connection (an
    // HTTP/2 stream ends alone: its connection carries other requests).
    if (res.socket && !isHttp2(turn.req)) res.socket.end()
    else res.destroy()
  }

  /** Answers a request that was not approved, and logs it (a 400 names no target: no line). */
  private answerUnapproved(
    turn: RequestTurn,
    approval: Exclude<Approval, { kind: 'approved' }>,
  ): void {
    const { res, exchange } = turn
    turn.refused()
    exchange.end()
    if (res.headersSent) return void res.destroy()
    const answer = answerTo(approval, exchange.policy.name)
    res.writeHead(answer.status, headersFor(turn.req, answer.headers))
    res.end(answer.body)
  }

  private poolFor(
    approved: Extract<Approval, { kind: 'approved' }>,
    mode: ForwardMode,
  ): Pool | Promise<Pool> {
    const { target, addresses } = approved
    const parent = this.ctx.parentProxy
    if (mode.kind === 'tunnel' && mode.intercepted) {
      // Intercepted: TLS to the checked address, verified for the checked name. (With a
      // parent proxy, the proxy never intercepts: see intercept/terminate.ts.)
      const address = addresses?.[0] as string
      return this.pools.get(
        `tls\u0000${target.host}\u0000${target.port}\u0000${address}`,
        () => `https://${joinAuthority(address, target.port)}`,
        upstreamTlsFor(this.ctx, target.host),
      )
    }
    if (parent)
      return this.pools.get(`parent\u0000${target.host}\u0000${target.port}`, () => parent.origin)
    const address = addresses?.[0] as string
    return this.pools.get(
      `${target.host}\u0000${target.port}\u0000${address}`,
      () => `http://${hostHeaderOf({ host: address, port: target.port })}`,
    )
  }

  /** Writes the request again upstream and streams the response back. */
  private dispatch(
    turn: RequestTurn,
    approved: Extract<Approval, { kind: 'approved' }>,
    pool: Pool,
    body: Readable | null,
    mode: ForwardMode,
    meter: BudgetMeter | undefined,
  ): void {
    const { req, res, exchange } = turn
    const { target, addresses } = approved
    const intercepted = mode.kind === 'tunnel' && mode.intercepted === true
    const parent = intercepted ? undefined : this.ctx.parentProxy
    let headers = upstreamRequestHeaders(
      withoutPseudoHeaders(req.rawHeaders),
      req.headers.host ?? hostHeaderOf(target),
    )
    // Only a request the proxy decrypted, to the checked name, gets a secret's value.
    if (intercepted) headers = withSecrets(this.ctx, target.host, headers)
    const credentials = parent && parentCredentials(parent)
    if (credentials) headers.push('Proxy-Authorization', credentials)
    const fail = (err: Error & { code?: string }): void => {
      if (meter?.exceeded !== undefined) return this.answerCut(turn, meter)
      const code = err.code ?? err.message
      const refusedCertificate = intercepted && isCertificateError(err)
      if (refusedCertificate && exchange.decision)
        exchange.decision = upstreamCertificateRefusal(exchange.decision, code)
      exchange.fail(`upstream: ${code}`)
      if (turn.left()) return
      if (res.headersSent) return void res.destroy()
      if (refusedCertificate && exchange.decision) {
        const answer = upstreamCertificateAnswer(exchange.decision, exchange.policy.name)
        res.writeHead(answer.status, headersFor(req, answer.headers))
        return void res.end(answer.body)
      }
      const timedOut = isTimeout(err)
      const text = `isorun: ${timedOut ? 'upstream timed out' : 'cannot reach upstream'}: ${target.host}:${target.port} (${err.code ?? err.message})\n`
      res.writeHead(timedOut ? 504 : 502, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': String(Buffer.byteLength(text)),
      })
      res.end(text)
    }
    const request: Dispatcher.DispatchOptions = {
      // Through a parent proxy, the request line names the checked address (the Host header
      // keeps the name), or the name when this proxy could not resolve it.
      path: parent
        ? `http://${hostHeaderOf({ host: addresses?.[0] ?? target.host, port: target.port })}${target.path}`
        : target.path,
      method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
      headers,
      body,
      // Never retried: the proxy cannot know whether a failed request had effects.
      idempotent: false,
    }
    try {
      pool.dispatch(request, responseHandler(turn, fail, meter))
    } catch (err) {
      fail(err as Error)
    }
  }

  /**
   * Upgrades. Only WebSocket is ever spliced (http-upgrade.ts). Any other protocol
   * (h2c above all) would let the client speak to the server unread, e.g. HTTP/2
   * requests naming other hosts: such a request is served as plain HTTP/1.1
   * without its upgrade headers, as by an origin that does not speak the
   * protocol, and the connection closes after the answer (a 101 to it is a 502,
   * see undici). One with a body cannot be served so (Node leaves its body
   * unread): decide() refuses it.
   */
  async handleUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    head: Buffer,
    mode: ForwardMode,
    exchange: Exchange,
  ): Promise<void> {
    socket.on('error', () => socket.destroy())
    const protocol = (req.headers.upgrade ?? '').trim().toLowerCase()
    if (protocol !== 'websocket' && !hasBody(req))
      return this.serveWithoutUpgrade(req, socket, mode, exchange)
    const key = protocol === 'websocket' ? websocketKeyOf(req) : undefined
    if (protocol === 'websocket' && key === undefined)
      return closeGracefully(
        socket,
        badRequestResponse('a WebSocket upgrade needs one Sec-WebSocket-Key'),
      )
    socket.setTimeout(this.ctx.timeouts.idleMs, () => socket.destroy())
    const hold: Hold = (decision) => holdClient(socket, (signal) => exchange.hold(decision, signal))
    const approval = await this.approve(req, mode, exchange, hold, req.headers.upgrade ?? '')
    // decide() approves no upgrade but WebSocket, which has its key.
    if (approval.kind === 'approved' && key !== undefined) {
      const { target, addresses } = approval
      // Intercepted: the origin is reached over TLS verified for the checked name.
      const tls =
        mode.kind === 'tunnel' && mode.intercepted
          ? upstreamTlsFor(this.ctx, target.host)
          : undefined
      const upgrade = { req, socket, head, key, target, addresses, ...(tls ? { tls } : {}) }
      return relayUpgrade(this.ctx, upgrade, exchange)
    }
    exchange.end()
    if (approval.kind === 'approved') return closeGracefully(socket)
    const answer = answerTo(approval, exchange.policy.name)
    closeGracefully(socket, rawResponse(answer.status, answer.headers, answer.body))
  }

  /**
   * Serves an upgrade request as a plain request (the forwarder drops Upgrade and
   * Connection like every hop-by-hop header) on a socket Node's server has let go
   * of, then closes it: what the client sent after the head is never read.
   */
  private async serveWithoutUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    mode: ForwardMode,
    exchange: Exchange,
  ): Promise<void> {
    const res = new http.ServerResponse(req)
    res.shouldKeepAlive = false
    res.assignSocket(socket)
    res.once('finish', () => closeGracefully(socket))
    await this.handleRequest(req, res, mode, exchange)
  }
}

/** A request as approve() checks it. */
interface Checked {
  readonly exchange: Exchange
  readonly request: EgressRequest
  readonly target: ForwardTarget
  readonly hold: Hold
}

/** Pseudo-headers (`:method`, `:authority`, … of an HTTP/2 request) are the request line's, not headers. */
function withoutPseudoHeaders(raw: readonly string[]): readonly string[] {
  let any = false
  for (let i = 0; i < raw.length && !any; i += 2) any = (raw[i] as string).startsWith(':')
  if (!any) return raw
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2)
    if (!(raw[i] as string).startsWith(':')) out.push(raw[i] as string, raw[i + 1] as string)
  return out
}

function latin1(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('latin1') : String(v)
}

/** A response's headers as a flat list: undici keeps a raw list over HTTP/1.1, an object over h2. */
function responseHeaderList(controller: Dispatcher.DispatchController): string[] {
  const raw = (controller as { rawHeaders?: unknown }).rawHeaders
  const names: string[] = []
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) names.push(latin1(raw[i]), latin1(raw[i + 1]))
  } else if (raw !== null && typeof raw === 'object') {
    for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
      if (name.startsWith(':') || value === undefined) continue
      for (const v of Array.isArray(value) ? value : [value]) names.push(name, String(v))
    }
  }
  return names
}

/**
 * A response's trailers, or undefined when there are none. undici 7 hands an h2
 * response's trailers to onResponseEnd parsed as if they were a raw list, which
 * empties them; the controller keeps them as received (an object over h2, a raw
 * list over HTTP/1.1, which the parsed copy covers).
 */
function trailersOf(
  controller: Dispatcher.DispatchController,
  parsed: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> | undefined {
  const raw = (controller as { rawTrailers?: unknown }).rawTrailers
  const source =
    raw !== null && typeof raw === 'object' && !Array.isArray(raw)
      ? (raw as Record<string, string | string[] | undefined>)
      : parsed
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(source))
    if (value !== undefined && !name.startsWith(':')) out[name] = value
  return Object.keys(out).length > 0 ? out : undefined
}

/** undici's handler for one forwarded request: the response goes to the client as it comes. */
function responseHandler(
  turn: RequestTurn,
  fail: (err: Error & { code?: string }) => void,
  meter: BudgetMeter | undefined,
): Dispatcher.DispatchHandler {
  const { res, exchange } = turn
  /**
   * How the response is held while the client is slow: an HTTP/1.1 response by its
   * connection's gate, which stops reading the socket (undici's parser must not pause
   * on a response that ends with its connection: see upstream-gate.ts); an h2 stream
   * by undici's pause.
   */
  let gate: UpstreamGate | undefined
  return {
    onRequestStart: (controller) => turn.started(controller),
    onResponseStart: (controller, statusCode, _parsed, statusMessage) => {
      if (statusCode < 200) return
      exchange.status = statusCode
      // Over h2 the headers are an object, over HTTP/1.1 a raw list.
      if (Array.isArray(controller.rawHeaders)) gate = UpstreamGate.ofResponseBeingParsed()
      const names = responseHeaderList(controller)
      try {
        // HTTP/2 has no reason phrase.
        if (isHttp2(turn.req)) res.writeHead(statusCode, endToEndHeaders(names))
        else res.writeHead(statusCode, statusMessage ?? '', endToEndHeaders(names))
      } catch (err) {
        // A status line or header Node will not write (control bytes): answer 502.
        controller.abort(err as Error)
      }
    },
    onResponseData: (controller, chunk) => {
      if (turn.left()) return controller.abort(new Error('the client closed the connection'))
      if (meter) {
        const allowed = meter.down(chunk.length)
        if (allowed < chunk.length) {
          if (allowed > 0) res.write(chunk.subarray(0, allowed))
          turn.bodyBytesDown += allowed
          return controller.abort(new Error(meter.exceeded))
        }
      }
      turn.bodyBytesDown += chunk.length
      if (res.write(chunk)) return
      // If the client leaves instead of draining, the turn aborts the request.
      if (gate) {
        const held = gate
        if (held.hold()) res.once('drain', () => held.release())
      } else {
        controller.pause()
        res.once('drain', () => controller.resume())
      }
    },
    onResponseEnd: (controller, trailers) => {
      // A kept connection goes back to its pool readable.
      gate?.release()
      // gRPC's status travels in trailers: they go on to the client as they came.
      const passed = trailersOf(controller, trailers)
      if (passed) res.addTrailers(passed)
      res.end()
    },
    onResponseError: (_controller, err) => fail(err as Error & { code?: string }),
  }
}
