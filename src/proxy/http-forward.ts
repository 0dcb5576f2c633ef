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

import type http from 'node:http'
import type net from 'node:net'
import { Readable } from 'node:stream'
import type { Dispatcher, Pool } from 'undici'
import {
  canonicalHost,
  decide,
  splitAuthority,
  type Decision,
  type EgressRequest,
  type Policy,
} from '../policy/index.js'
import { clientAddress, record, type ProxyContext } from './context.js'
import { countHeader, endToEndHeaders, hasHeader } from './http-headers.js'
import { refusalHeaders, refusalResponse, refusalText, upstreamFailureResponse } from './refusal.js'
import { endAndClose } from './tunnel.js'
import { connectToAny, connectViaParent, UpstreamError } from './upstream.js'

export interface ForwardTarget {
  readonly host: string
  readonly port: number
  readonly path: string
}

export class BadProxyRequest extends Error {}

/**
 * `http://host[:port]/path` from an absolute-form request target. Parsed by hand,
 * strictly: userinfo, backslashes and other schemes are refused, so no URL
 * parser quirk can make the checked host differ from the one dialled.
 */
export function parseAbsoluteTarget(url: string): ForwardTarget {
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
  const path = rest.startsWith('/') ? rest : `/${rest}`
  return { host: hp.host, port: hp.port ?? 80, path }
}

/** `host:port` as a Host header or URL authority writes it (IPv6 in brackets). */
function authorityOf(target: { host: string; port: number }): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  return target.port === 80 ? host : `${host}:${target.port}`
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

/** The headers an upgrade request keeps beyond the end-to-end ones. */
const UPGRADE_KEEPS: ReadonlySet<string> = new Set(['connection', 'upgrade'])

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

/**
 * Reads an HTTP response head from a socket (bounded in size and time): its
 * status, its Upgrade header, and every byte read so far (head and any body
 * bytes after it), or undefined when the answer is not a valid HTTP/1.x head.
 */
function readResponseHead(
  socket: net.Socket,
  timeoutMs: number,
): Promise<ResponseHead | undefined> {
  return new Promise((resolve) => {
    let bytes = Buffer.alloc(0)
    const finish = (result: ResponseHead | undefined): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.pause()
      resolve(result)
    }
    const onData = (chunk: Buffer): void => {
      bytes = Buffer.concat([bytes, chunk])
      const end = bytes.indexOf('\r\n\r\n')
      if (end < 0) {
        if (bytes.length > MAX_RESPONSE_HEAD_BYTES) finish(undefined)
        return
      }
      const lines = bytes.subarray(0, end).toString('latin1').split('\r\n')
      const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '')?.[1]
      if (!status) return finish(undefined)
      const header = (name: string): string | undefined =>
        lines
          .slice(1)
          .map((l) => new RegExp(`^${name}:\\s*(.*?)\\s*$`, 'i').exec(l)?.[1])
          .find((v) => v !== undefined)
      const length = header('content-length')
      finish({
        status: Number(status),
        upgrade: header('upgrade'),
        contentLength: length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined,
        bodyBytes: bytes.length - (end + 4),
        bytes,
      })
    }
    const onClose = (): void => finish(undefined)
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.resume()
  })
}

const MAX_RESPONSE_HEAD_BYTES = 64 * 1024

interface ResponseHead {
  readonly status: number
  readonly upgrade: string | undefined
  readonly contentLength: number | undefined
  /** Bytes of the body already read, after the head. */
  readonly bodyBytes: number
  /** Everything read so far: the head and those body bytes. */
  readonly bytes: Buffer
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

  constructor(private readonly ctx: ProxyContext) {
    this.pools = new PoolSet(ctx)
  }

  close(): void {
    this.pools.destroy()
  }

  /** Target, decision and checked address for a request, or a refusal already sent. */
  private async approve(
    req: http.IncomingMessage,
    mode: ForwardMode,
    refuse: (status: number, text: string, decision?: Decision, policy?: Policy) => void,
  ): Promise<Approved | undefined> {
    const startedAt = performance.now()
    const policy = this.ctx.policy.current
    let target: ForwardTarget
    try {
      if (countHeader(req.rawHeaders, 'host') > 1)
        throw new BadProxyRequest('more than one Host header')
      if (mode.kind === 'proxy') {
        target = parseAbsoluteTarget(req.url ?? '')
      } else if (mode.kind === 'tunnel') {
        const url = req.url ?? ''
        const path = url.startsWith('/') ? url : parseAbsoluteTarget(url).path
        target = { host: mode.host, port: mode.port, path }
      } else {
        const url = req.url ?? ''
        if (!url.startsWith('/'))
          throw new BadProxyRequest('expected an origin-form request target')
        // decide() checks that the Host names a valid host on this port.
        const host = splitAuthority(req.headers.host ?? '')?.host ?? ''
        target = { host, port: mode.port(), path: url }
      }
    } catch (err) {
      if (!(err instanceof BadProxyRequest)) throw err
      refuse(400, `isorun: bad request: ${err.message}\n`)
      return undefined
    }
    // HTTP/1.0 may omit Host; the target names the host then, and upstream gets it as Host.
    if (req.headers.host === undefined && mode.kind !== 'transparent')
      req.headers.host = authorityOf(target)
    const request: EgressRequest = {
      protocol: mode.kind === 'tunnel' ? mode.protocol : 'http',
      host: target.host,
      port: target.port,
      method: req.method ?? 'GET',
      path: target.path,
      hostHeader: req.headers.host ?? '',
    }
    const log = (decision: Decision, extra: { error?: string } = {}): void =>
      this.log({ policy, decision, request, startedAt }, req.socket, extra)

    let decision = decide(request, policy)
    if (decision.action === 'allow') {
      let addresses: string[] | undefined
      try {
        addresses = await this.ctx.resolver.resolve(canonicalHost(target.host))
      } catch (err) {
        if (!(this.ctx.parentProxy && err instanceof UpstreamError && err.kind === 'resolve')) {
          log(decision, { error: (err as Error).message })
          refuse(502, `isorun: ${(err as Error).message}\n`)
          return undefined
        }
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
    const approved = await this.approve(req, mode, (status, text, decision) => {
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
    const socket = req.socket
    let bytesUp = requestHeadBytes(req)
    const writtenBefore = socket.bytesWritten
    let error: string | undefined
    let controller: Dispatcher.DispatchController | undefined
    res.once('close', () => {
      if (!res.writableFinished) controller?.abort(new Error('the client closed the connection'))
      this.logForwarded(approved, socket, {
        bytesUp,
        bytesDown: socket.bytesWritten - writtenBefore,
        ...(error
          ? { error }
          : !res.writableFinished
            ? { error: 'connection closed before the response completed' }
            : {}),
      })
    })

    const parent = this.ctx.parentProxy
    const headers = endToEndHeaders(req.rawHeaders)
    // HTTP/1.0 may omit Host (approve() checked the target); upstream always gets one.
    if (!hasHeader(headers, 'host')) headers.push('Host', req.headers.host ?? authorityOf(target))
    if (parent?.username) {
      const credentials = `${decodeURIComponent(parent.username)}:${decodeURIComponent(parent.password)}`
      headers.push('Proxy-Authorization', `Basic ${Buffer.from(credentials).toString('base64')}`)
    }
    const pool = await (parent
      ? this.pools.get(parent.origin, `parent\u0000${target.host}\u0000${target.port}`)
      : this.pools.get(
          `http://${(address as string).includes(':') ? `[${address}]` : address}:${target.port}`,
          `${target.host}\u0000${target.port}\u0000${address}`,
        ))
    const body = hasBody(req) ? Readable.from(countedBody(req, (n) => (bytesUp += n))) : null
    const fail = (err: Error & { code?: string }): void => {
      error = `upstream: ${err.code ?? err.message}`
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
            if (!res.write(chunk)) {
              c.pause()
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
   * Upgrades (WebSocket and others): decided like any request, then the head is
   * sent to a checked address and the two connections are spliced, so the
   * upstream's 101 and everything after it flow back unchanged.
   */
  async handleUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    head: Buffer,
    mode: ForwardMode,
  ): Promise<void> {
    socket.on('error', () => socket.destroy())
    socket.setTimeout(this.ctx.timeouts.idleMs, () => socket.destroy())
    const approved = await this.approve(req, mode, (status, text, decision, policy) => {
      if (decision && policy) endAndClose(socket, refusalResponse(decision, policy.name))
      else
        endAndClose(
          socket,
          `HTTP/1.1 ${status} Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
        )
    })
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
      const parent = this.ctx.parentProxy
      const host = canonicalHost(target.host)
      upstream = parent
        ? await connectViaParent(
            parent,
            address ?? (host.kind === 'name' ? host.name : host.text),
            target.port,
            this.ctx.timeouts.connectMs,
          )
        : (await connectToAny([address as string], target.port, this.ctx.timeouts.connectMs)).socket
    } catch (err) {
      error = `upstream: ${(err as Error).message}`
      endAndClose(
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
    const headers = endToEndHeaders(req.rawHeaders, UPGRADE_KEEPS)
    if (!hasHeader(headers, 'host')) headers.push('Host', req.headers.host ?? authorityOf(target))
    let text = `${req.method ?? 'GET'} ${target.path} HTTP/1.1\r\n`
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i] as string
      // "close" too: a server that does not switch protocols ends the connection after
      // its answer, so nothing else can travel on it without a decision.
      const value =
        name.toLowerCase() === 'connection' ? `${headers[i + 1]}, close` : headers[i + 1]
      text += `${name}: ${value}\r\n`
    }
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
    upstream.write(`${text}\r\n`)
    const answer = await readResponseHead(upstream, this.ctx.timeouts.firstBytesMs)
    if (!answer) {
      error ??= 'upstream: no valid response to the upgrade request'
      upstream.destroy()
      if (!socket.destroyed)
        endAndClose(
          socket,
          upstreamFailureResponse(
            502,
            `${target.host}:${target.port} sent no valid response to the upgrade request`,
          ),
        )
      return
    }
    socket.write(answer.bytes)
    const wanted = (req.headers.upgrade ?? '').toLowerCase()
    if (
      answer.status === 101 &&
      answer.upgrade !== undefined &&
      answer.upgrade.toLowerCase() === wanted
    ) {
      if (head.length > 0) upstream.write(head)
      upstream.once('close', () => socket.end())
      upstream.pipe(socket)
      socket.pipe(upstream)
      return
    }
    // Not switched: relay the rest of this one answer, then close both sides.
    let remaining =
      answer.contentLength === undefined ? Infinity : answer.contentLength - answer.bodyBytes
    const done = (): void => {
      upstream.destroy()
      endAndClose(socket)
    }
    if (remaining <= 0) return done()
    upstream.once('close', () => endAndClose(socket))
    upstream.on('data', (chunk: Buffer) => {
      const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk
      remaining -= part.length
      socket.write(part)
      if (remaining <= 0) done()
    })
    upstream.resume()
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
