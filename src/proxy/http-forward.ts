// Plain-HTTP forwarding for absolute-form proxy requests, the transparent HTTP
// listener and plain HTTP inside tunnels. Every request on a kept-alive client
// connection is decided on its own; upstream connections are pooled per host,
// port and checked address, so one is never reused for another host.
//
// The client side is Node's strict HTTP server; the upstream side is undici
// (the Node.js project's HTTP client), which replaced http-proxy: that package
// is unmaintained, stripped headers too late (a crash under load, leaked
// Proxy-* headers with Expect), and cost about twice the CPU per request.
// Upgrades (WebSocket) are spliced by hand after the request head is sent.

import { createHash } from 'node:crypto'
import http from 'node:http'
import type net from 'node:net'
import { Readable } from 'node:stream'
import type { Dispatcher, Pool } from 'undici'
import {
  decide,
  joinAuthority,
  overrideHeadersIn,
  splitAuthority,
  withoutFragment,
  type Decision,
  type EgressRequest,
  type Policy,
} from '../policy/index.js'
import { clientAddress, record, type ProxyContext } from './context.js'
import { countHeader, endToEndHeaders, hasHeader } from './http-headers.js'
import {
  badRequestResponse,
  plainResponse,
  refusalHeaders,
  refusalResponse,
  refusalText,
  upstreamFailureResponse,
} from './refusal.js'
import { dialUpstream, parentCredentials, resolveUpstream } from './upstream.js'
import {
  closeGracefully,
  headerValue,
  headText,
  readHttpHead,
  responseStatus,
  type HttpHead,
} from './wire.js'

export interface ForwardTarget {
  readonly host: string
  readonly port: number
  /** The path and query, as decided and forwarded (never a fragment). */
  readonly path: string
}

export class BadProxyRequest extends Error {}

/**
 * `http://host[:port]/path` from an absolute-form request target. Parsed by hand,
 * strictly: userinfo, backslashes and other schemes are refused, so no URL
 * parser quirk can make the checked host differ from the one dialled.
 */
export function parseAbsoluteTarget(url: string): ForwardTarget & { readonly authority: string } {
  const m = /^http:\/\/([^/?#]*)([/?#].*)?$/i.exec(url)
  if (!m) {
    if (/^https:\/\//i.test(url))
      throw new BadProxyRequest(
        'https:// URLs go through CONNECT; set HTTPS_PROXY instead of sending them as plain requests',
      )
    if (url.startsWith('/'))
      throw new BadProxyRequest(
        'this is an egress proxy: send absolute-form requests (set HTTP_PROXY), not requests for the proxy itself',
      )
    throw new BadProxyRequest('unsupported request target; only http:// URLs are forwarded')
  }
  const authority = m[1] as string
  const rest = m[2] ?? '/'
  if (authority.includes('@')) throw new BadProxyRequest('credentials in the URL are not accepted')
  if (rest.includes('\\')) throw new BadProxyRequest('backslashes in the URL are not accepted')
  const hp = splitAuthority(authority)
  if (!hp) throw new BadProxyRequest(`"${authority}" is not a valid host[:port]`)
  const path = withoutFragment(rest.startsWith('/') ? rest : `/${rest}`)
  return { host: hp.host, port: hp.port ?? 80, path, authority }
}

/**
 * The target of a request that names its host in the Host header (transparent
 * HTTP, HTTP inside a tunnel): the path, and the authority an absolute-form
 * target names, which decide() checks as it checks the Host.
 */
function originTarget(url: string): { path: string; authority?: string } {
  if (url.startsWith('/')) return { path: withoutFragment(url) }
  const absolute = parseAbsoluteTarget(url)
  return { path: absolute.path, authority: absolute.authority }
}

/** `host:port` as a Host header or URL authority writes it (IPv6 in brackets). */
function authorityOf(target: { host: string; port: number }): string {
  return joinAuthority(target.host, target.port === 80 ? undefined : target.port)
}

export type ForwardMode =
  /** An HTTP proxy: absolute-form targets. */
  | { readonly kind: 'proxy' }
  /** The transparent listener: origin-form targets, the Host header names the target. */
  | { readonly kind: 'transparent'; readonly port: () => number }
  /**
   * Plain HTTP inside a CONNECT or SOCKS tunnel to `host:port`: every request on
   * it is decided on its own, and its Host must name the tunnel's target.
   */
  | {
      readonly kind: 'tunnel'
      readonly protocol: 'connect' | 'socks'
      readonly host: string
      readonly port: number
    }

interface Approved {
  readonly decision: Decision
  readonly policy: Policy
  readonly target: ForwardTarget
  readonly address: string | undefined
  readonly startedAt: number
  readonly request: EgressRequest
}

// undici is loaded on the first plain-HTTP request: a sidecar that only
// tunnels TLS (the common case) never pays its memory.
let undici: Promise<typeof import('undici')> | undefined
function loadUndici(): Promise<typeof import('undici')> {
  undici ??= import('undici')
  return undici
}

/** One undici pool per (host, port, checked address), least recently used evicted past a bound. */
class PoolSet {
  private readonly pools = new Map<string, Pool>()

  constructor(
    private readonly ctx: ProxyContext,
    private readonly limit = 512,
  ) {}

  async get(origin: string, key: string): Promise<Pool> {
    const { Pool } = await loadUndici()
    let pool = this.pools.get(key)
    if (pool) {
      this.pools.delete(key) // re-inserted below: most recently used last
    } else {
      const t = this.ctx.timeouts
      pool = new Pool(origin, {
        connections: 64,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: t.idleMs,
        bodyTimeout: t.idleMs,
        connect: { timeout: t.connectMs },
      })
      if (this.pools.size >= this.limit) {
        const [oldestKey, oldest] = this.pools.entries().next().value as [string, Pool]
        void oldest.close().catch(() => undefined)
        this.pools.delete(oldestKey)
      }
    }
    this.pools.set(key, pool)
    return pool
  }

  destroy(): void {
    for (const pool of this.pools.values()) void pool.destroy().catch(() => undefined)
    this.pools.clear()
  }
}

/** A WebSocket key as RFC 6455 §4.1 has clients send it: 16 bytes in base64. */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/

/** The Sec-WebSocket-Accept a WebSocket server answers `key` with (RFC 6455 §4.2.2). */
function websocketAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
}

/**
 * Whether the server switched to WebSocket, and proved it speaks it: a server
 * that answers 101 but goes on reading HTTP would otherwise take the client's
 * next bytes as requests no decision saw.
 */
function switchedToWebSocket(answer: UpgradeAnswer, key: string): boolean {
  return (
    answer.status === 101 &&
    headerValue(answer.head, 'upgrade')?.toLowerCase() === 'websocket' &&
    headerValue(answer.head, 'sec-websocket-accept') === websocketAccept(key)
  )
}

/** The origin's answer to an upgrade request, or undefined when it sent no valid HTTP/1.x head in time. */
async function readUpgradeAnswer(
  upstream: net.Socket,
  timeoutMs: number,
): Promise<UpgradeAnswer | undefined> {
  const reading = await readHttpHead(upstream, timeoutMs)
  if ('error' in reading) return undefined
  const status = responseStatus(reading.head)
  return status === undefined ? undefined : { status, head: reading.head, rest: reading.rest }
}

/** An origin's answer to an upgrade request: its head and the body bytes read after it. */
interface UpgradeAnswer {
  readonly status: number
  readonly head: HttpHead
  /** The body bytes read with the head. */
  readonly rest: Buffer
}

/** Bytes of a request head as the client sent it, for the log's bytes up. */
function requestHeadBytes(req: http.IncomingMessage): number {
  let n = (req.method?.length ?? 0) + (req.url?.length ?? 0) + 13 // "M U HTTP/1.1\r\n"
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    n += (req.rawHeaders[i] as string).length + (req.rawHeaders[i + 1] as string).length + 4
  }
  return n + 2
}

function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/** The request body as undici reads it, counting bytes for the log. */
async function* countedBody(
  req: http.IncomingMessage,
  count: (n: number) => void,
): AsyncGenerator<Buffer> {
  for await (const chunk of req as AsyncIterable<Buffer>) {
    count(chunk.length)
    yield chunk
  }
}

function isTimeout(err: Error & { code?: string }): boolean {
  return /TIMEOUT/i.test(err.code ?? '') || err.name === 'ConnectTimeoutError'
}

export class HttpForwarder {
  private readonly pools: PoolSet
  /** How many requests each client connection has sent so far. */
  private readonly requestCount = new WeakMap<net.Socket, number>()
  /**
   * Client connections answered with a refusal (Connection: close), and which request
   * it answered: the requests pipelined behind it are on a connection that is ending,
   * and nothing of them is decided or sent.
   */
  private readonly refusedAt = new WeakMap<net.Socket, number>()

  /** Whether request number `n` of a connection came after a refusal on it. */
  private behindRefusal(socket: net.Socket, n: number): boolean {
    const refused = this.refusedAt.get(socket)
    return refused !== undefined && n > refused
  }

  constructor(private readonly ctx: ProxyContext) {
    this.pools = new PoolSet(ctx)
  }

  close(): void {
    this.pools.destroy()
  }

  /**
   * Target, decision and checked address for a request, or a refusal already sent.
   * `upgrade`: the protocol an upgrade request asks for (on any other request,
   * Upgrade is a hop-by-hop header and never forwarded).
   */
  private async approve(
    req: http.IncomingMessage,
    mode: ForwardMode,
    refuse: (status: number, text: string, decision?: Decision, policy?: Policy) => void,
    upgrade?: string,
  ): Promise<Approved | undefined> {
    const startedAt = performance.now()
    const policy = this.ctx.policy.current
    let target: ForwardTarget
    /** The authority an absolute-form target names where the Host header names the target. */
    let targetAuthority: string | undefined
    try {
      if (countHeader(req.rawHeaders, 'host') > 1)
        throw new BadProxyRequest('more than one Host header')
      if (mode.kind === 'proxy') {
        target = parseAbsoluteTarget(req.url ?? '')
      } else {
        const origin = originTarget(req.url ?? '')
        targetAuthority = origin.authority
        // In a tunnel the target is the tunnel's; transparently, the Host names it, and
        // decide() checks that it names a valid host on this port.
        target =
          mode.kind === 'tunnel'
            ? { host: mode.host, port: mode.port, path: origin.path }
            : {
                host: splitAuthority(req.headers.host ?? '')?.host ?? '',
                port: mode.port(),
                path: origin.path,
              }
      }
    } catch (err) {
      if (!(err instanceof BadProxyRequest)) throw err
      refuse(400, `isorun: bad request: ${err.message}\n`)
      return undefined
    }
    // HTTP/1.0 may omit Host; the target names the host then, and upstream gets it as Host.
    if (req.headers.host === undefined && mode.kind !== 'transparent')
      req.headers.host = authorityOf(target)
    const overrides = overrideHeadersIn(req.rawHeaders)
    const request: EgressRequest = {
      protocol: mode.kind === 'tunnel' ? mode.protocol : 'http',
      host: target.host,
      port: target.port,
      method: req.method ?? 'GET',
      path: target.path,
      hostHeader: req.headers.host ?? '',
      ...(targetAuthority !== undefined ? { targetAuthority } : {}),
      ...(upgrade !== undefined ? { upgrade } : {}),
      ...(overrides.length > 0 ? { overrides } : {}),
    }
    const log = (decision: Decision, extra: { error?: string } = {}): void =>
      this.log({ policy, decision, request, startedAt }, req.socket, extra)

    let decision = decide(request, policy)
    if (decision.action === 'allow') {
      let addresses: string[] | undefined
      try {
        addresses = await resolveUpstream(this.ctx, target.host)
      } catch (err) {
        log(decision, { error: (err as Error).message })
        refuse(502, `isorun: ${(err as Error).message}\n`)
        return undefined
      }
      decision = decide({ ...request, ...(addresses ? { resolved: addresses } : {}) }, policy)
      if (decision.action === 'allow')
        return { decision, policy, target, address: addresses?.[0], startedAt, request }
    }
    log(decision)
    refuse(403, refusalText(decision, policy.name), decision, policy)
    return undefined
  }

  async handleRequest(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    mode: ForwardMode,
  ): Promise<void> {
    const socket = req.socket
    const n = (this.requestCount.get(socket) ?? 0) + 1
    this.requestCount.set(socket, n)
    if (this.behindRefusal(socket, n)) return
    // The client may leave at any point: while the request is decided, before undici has
    // started it (a pooled connection may be busy), or mid-response. Whenever it does, the
    // upstream request is not sent, or aborted as soon as undici starts it, so no pooled
    // connection is left holding a response nobody reads. A queued response of a pipelined
    // request never closes when the connection does: the socket's close counts too.
    let gone = false
    // A destroyed socket emits 'close' only once its handle has closed: ask it directly too.
    const left = (): boolean => gone || socket.destroyed || res.destroyed
    let controller: Dispatcher.DispatchController | undefined
    let logLine: (() => void) | undefined
    const finished = (): void => {
      res.off('close', finished)
      socket.off('close', finished)
      if (!res.writableFinished) {
        gone = true
        controller?.abort(new Error('the client closed the connection'))
      }
      logLine?.()
      logLine = undefined
    }
    res.once('close', finished)
    socket.once('close', finished)

    const approved = await this.approve(req, mode, (status, text, decision) => {
      if (!this.refusedAt.has(socket)) this.refusedAt.set(socket, n)
      if (res.headersSent) return res.destroy()
      const headers = decision
        ? refusalHeaders(text)
        : {
            'Content-Type': 'text/plain; charset=utf-8',
            'Content-Length': String(Buffer.byteLength(text)),
            Connection: 'close',
          }
      res.writeHead(status, headers)
      res.end(text)
    })
    if (!approved) return
    const { target, address } = approved
    let bytesUp = requestHeadBytes(req)
    const writtenBefore = socket.bytesWritten
    let error: string | undefined
    logLine = () =>
      this.logForwarded(approved, socket, {
        bytesUp,
        bytesDown: socket.bytesWritten - writtenBefore,
        ...(error
          ? { error }
          : !res.writableFinished
            ? { error: 'connection closed before the response completed' }
            : {}),
      })

    const parent = this.ctx.parentProxy
    const headers = endToEndHeaders(req.rawHeaders)
    // HTTP/1.0 may omit Host (approve() checked the target); upstream always gets one.
    if (!hasHeader(headers, 'host')) headers.push('Host', req.headers.host ?? authorityOf(target))
    const credentials = parent && parentCredentials(parent)
    if (credentials) headers.push('Proxy-Authorization', credentials)
    const pool = await (parent
      ? this.pools.get(parent.origin, `parent\u0000${target.host}\u0000${target.port}`)
      : this.pools.get(
          `http://${joinAuthority(address as string, target.port)}`,
          `${target.host}\u0000${target.port}\u0000${address}`,
        ))
    if (left() || this.behindRefusal(socket, n)) {
      // Left, or refused a later request, while this one was decided: nothing is sent.
      error = 'the client closed the connection before the request was sent'
      logLine()
      logLine = undefined
      return
    }
    const body = hasBody(req) ? Readable.from(countedBody(req, (n) => (bytesUp += n))) : null
    const fail = (err: Error & { code?: string }): void => {
      error ??= `upstream: ${err.code ?? err.message}`
      if (left()) return
      if (res.headersSent) {
        res.destroy()
        return
      }
      const timedOut = isTimeout(err)
      const text = `isorun: ${timedOut ? 'upstream timed out' : 'cannot reach upstream'}: ${target.host}:${target.port} (${err.code ?? err.message})\n`
      res.writeHead(timedOut ? 504 : 502, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': String(Buffer.byteLength(text)),
      })
      res.end(text)
    }
    try {
      pool.dispatch(
        {
          // Through a parent proxy, the request line names the checked address (the Host header
          // keeps the name), or the name when this proxy could not resolve it.
          path: parent
            ? `http://${authorityOf({ host: address ?? target.host, port: target.port })}${target.path}`
            : target.path,
          method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
          headers,
          body,
          // Never retried: the proxy cannot know whether a failed request had effects.
          idempotent: false,
        },
        {
          onRequestStart: (c) => {
            controller = c
            // The client left while the request waited for a connection.
            if (left()) c.abort(new Error('the client closed the connection'))
          },
          onResponseStart: (c, statusCode, _parsed, statusMessage) => {
            if (statusCode < 200) return
            const raw = (c.rawHeaders ?? []) as Buffer[]
            const names: string[] = []
            for (let i = 0; i + 1 < raw.length; i += 2) {
              names.push(
                (raw[i] as Buffer).toString('latin1'),
                (raw[i + 1] as Buffer).toString('latin1'),
              )
            }
            try {
              res.writeHead(statusCode, statusMessage ?? '', endToEndHeaders(names))
            } catch (err) {
              // A status line or header Node will not write (control bytes): answer 502.
              c.abort(err as Error)
            }
          },
          onResponseData: (c, chunk) => {
            if (left()) return c.abort(new Error('the client closed the connection'))
            if (!res.write(chunk)) {
              c.pause()
              // If the client leaves instead of draining, finished() aborts the request.
              res.once('drain', () => c.resume())
            }
          },
          onResponseEnd: () => {
            res.end()
          },
          onResponseError: (_c, err) => fail(err as Error & { code?: string }),
        },
      )
    } catch (err) {
      fail(err as Error)
    }
  }

  /**
   * Upgrades. Only WebSocket is ever spliced: a WebSocket upgrade goes to a
   * checked address, and the connections are spliced once the upstream has
   * answered 101 with Upgrade: websocket. Any other protocol (h2c above all)
   * would let the client speak to the server unread, e.g. HTTP/2 requests
   * naming other hosts: such a request is served as plain HTTP/1.1 without its
   * upgrade headers, as by an origin that does not speak the protocol, and the
   * connection closes after the answer (a 101 to it is a 502, see undici). One
   * with a body cannot be served so (Node leaves its body unread): decide()
   * refuses it.
   */
  async handleUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    head: Buffer,
    mode: ForwardMode,
  ): Promise<void> {
    socket.on('error', () => socket.destroy())
    const protocol = (req.headers.upgrade ?? '').trim().toLowerCase()
    if (protocol !== 'websocket' && !hasBody(req))
      return this.serveWithoutUpgrade(req, socket, mode)
    const key = req.headers['sec-websocket-key']
    if (
      protocol === 'websocket' &&
      (countHeader(req.rawHeaders, 'sec-websocket-key') !== 1 || !WEBSOCKET_KEY.test(key ?? ''))
    ) {
      closeGracefully(socket, badRequestResponse('a WebSocket upgrade needs one Sec-WebSocket-Key'))
      return
    }
    socket.setTimeout(this.ctx.timeouts.idleMs, () => socket.destroy())
    const approved = await this.approve(
      req,
      mode,
      (status, text, decision, policy) => {
        if (decision && policy) closeGracefully(socket, refusalResponse(decision, policy.name))
        else closeGracefully(socket, plainResponse(status, text))
      },
      req.headers.upgrade ?? '',
    )
    if (!approved) return
    const { target, address } = approved
    const readBefore = socket.bytesRead
    const writtenBefore = socket.bytesWritten
    let error: string | undefined
    socket.once('close', () =>
      this.logForwarded(approved, socket, {
        bytesUp: socket.bytesRead - readBefore,
        bytesDown: socket.bytesWritten - writtenBefore,
        ...(error ? { error } : {}),
      }),
    )
    let upstream: net.Socket
    try {
      upstream = (
        await dialUpstream(this.ctx, target.host, target.port, address ? [address] : undefined)
      ).socket
    } catch (err) {
      error = `upstream: ${(err as Error).message}`
      closeGracefully(
        socket,
        upstreamFailureResponse(
          502,
          `cannot reach upstream ${target.host}:${target.port} (${(err as Error).message})`,
        ),
      )
      return
    }
    if (socket.destroyed) {
      upstream.destroy()
      return
    }
    const headers = endToEndHeaders(req.rawHeaders)
    if (!hasHeader(headers, 'host')) headers.push('Host', req.headers.host ?? authorityOf(target))
    // The upgrade as decided, whatever else the client's Connection named. "close" too: a
    // server that does not switch protocols ends the connection after its answer, so
    // nothing else can travel on it without a decision.
    headers.push('Connection', 'Upgrade, close', 'Upgrade', 'websocket')
    const pairs: [string, string][] = []
    for (let i = 0; i + 1 < headers.length; i += 2)
      pairs.push([headers[i] as string, headers[i + 1] as string])
    const fail = (which: string) => (err: NodeJS.ErrnoException) => {
      error ??= `${which}: ${err.code ?? err.message}`
      socket.destroy()
      upstream.destroy()
    }
    upstream.on('error', fail('upstream'))
    socket.on('error', fail('client'))
    socket.once('close', () => upstream.destroy())
    upstream.setTimeout(this.ctx.timeouts.idleMs, () => upstream.destroy())
    // Only the upgrade request goes up at first: the client's further bytes wait until the
    // upstream has switched protocols. Were it to answer anything else, they would be new
    // HTTP requests on an allowed connection that no decision had seen.
    socket.pause()
    upstream.write(headText(`${req.method ?? 'GET'} ${target.path} HTTP/1.1`, pairs))
    const answer = await readUpgradeAnswer(upstream, this.ctx.timeouts.firstBytesMs)
    // A 101 to anything but WebSocket (or another 1xx) is no answer the client asked for,
    // and nothing may travel after it: 502.
    const switched = answer !== undefined && switchedToWebSocket(answer, key as string)
    if (!answer || (answer.status < 200 && !switched)) {
      error ??= answer
        ? `upstream: answered ${answer.status} ${headerValue(answer.head, 'upgrade') ?? ''} to a WebSocket upgrade`
        : 'upstream: no valid response to the upgrade request'
      upstream.destroy()
      if (!socket.destroyed)
        closeGracefully(
          socket,
          upstreamFailureResponse(
            502,
            `${target.host}:${target.port} sent no valid response to the WebSocket upgrade request`,
          ),
        )
      return
    }
    socket.write(
      Buffer.concat([
        Buffer.from(headText(answer.head.startLine, answer.head.headers), 'latin1'),
        answer.rest,
      ]),
    )
    // decide() let only WebSocket through; the splice opens only if that is what the server took.
    if (switched) {
      if (head.length > 0) upstream.write(head)
      upstream.once('close', () => socket.end())
      upstream.pipe(socket)
      socket.pipe(upstream)
      return
    }
    // Not switched: relay the rest of this one answer, then close both sides.
    const length = headerValue(answer.head, 'content-length')
    let remaining =
      length !== undefined && /^\d+$/.test(length) ? Number(length) - answer.rest.length : Infinity
    const done = (): void => {
      upstream.destroy()
      closeGracefully(socket)
    }
    if (remaining <= 0) return done()
    upstream.once('close', () => closeGracefully(socket))
    upstream.on('data', (chunk: Buffer) => {
      const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk
      remaining -= part.length
      socket.write(part)
      if (remaining <= 0) done()
    })
    upstream.resume()
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
  ): Promise<void> {
    const res = new http.ServerResponse(req)
    res.shouldKeepAlive = false
    res.assignSocket(socket)
    res.once('finish', () => closeGracefully(socket))
    await this.handleRequest(req, res, mode)
  }

  /** The log line of a forwarded request or upgrade, when it ends. */
  private logForwarded(
    approved: Approved,
    socket: net.Socket,
    outcome: { bytesUp: number; bytesDown: number; error?: string },
  ): void {
    const address = approved.address ?? `via ${this.ctx.parentProxy?.host ?? '?'}`
    this.log(approved, socket, { address, ...outcome })
  }

  /** One decision line for a request: refused, failed, or forwarded (with bytes). */
  private log(
    at: Pick<Approved, 'policy' | 'decision' | 'request' | 'startedAt'>,
    socket: net.Socket,
    extra: { address?: string; error?: string; bytesUp?: number; bytesDown?: number },
  ): void {
    record(this.ctx, {
      policy: at.policy,
      protocol: at.request.protocol,
      decision: at.decision,
      method: at.request.method,
      path: at.request.path,
      client: clientAddress(socket),
      startedAt: at.startedAt,
      ...extra,
    })
  }
}
