// Plain-HTTP forwarding for absolute-form proxy requests and for the
// transparent HTTP listener. Every request on a kept-alive client connection
// is decided on its own; the upstream connection pool is keyed by host, port
// and checked address, so a connection is never reused for another host.
// Forwarding itself is done by http-proxy, with hop-by-hop and Proxy-* headers
// stripped both ways.

import http from 'node:http'
import type net from 'node:net'
import httpProxy from 'http-proxy'
import {
  canonicalHost,
  decide,
  type Decision,
  type EgressRequest,
  type Policy,
} from '../policy/index.js'
import { clientAddress, record, type ProxyContext } from './context.js'
import { refusalHeaders, refusalResponse, refusalText, upstreamFailureResponse } from './refusal.js'
import { endAndClose } from './tunnel.js'
import { UpstreamError } from './upstream.js'

/** Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the proxy's own. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
]

function connectionTokens(value: string | string[] | undefined): string[] {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '')
  return text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade')
}

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
  const hp = /^(\[[^\]]+\]|[^:[\]]+)(?::([0-9]{1,5}))?$/.exec(authority)
  if (!hp) throw new BadProxyRequest(`"${authority}" is not a valid host[:port]`)
  const host = (hp[1] as string).replace(/^\[|\]$/g, '')
  const port = hp[2] === undefined ? 80 : Number(hp[2])
  const path = rest.startsWith('/') ? rest : `/${rest}`
  return { host, port, path }
}

/** The size of a request's head as the client sent it (request line, headers, blank line). */
function requestHeadBytes(req: http.IncomingMessage): number {
  let n = Buffer.byteLength(
    `${req.method ?? ''} ${req.url ?? ''} HTTP/${req.httpVersion}\r\n`,
    'latin1',
  )
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
    n += Buffer.byteLength(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`, 'latin1')
  return n + 2
}

/** `host:port` as a Host header or URL authority writes it (IPv6 in brackets). */
function authorityOf(target: { host: string; port: number }): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  return target.port === 80 ? host : `${host}:${target.port}`
}

/** A request may carry exactly one Host header; Node keeps only the first, so count the raw ones. */
function hostHeaderCount(req: http.IncomingMessage): number {
  let n = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    if ((req.rawHeaders[i] as string).toLowerCase() === 'host') n++
  return n
}

class AgentPool {
  private readonly agents = new Map<string, http.Agent>()
  constructor(private readonly limit = 512) {}

  /** One keep-alive agent per (host, port, checked address): pooled sockets never serve another host. */
  get(host: string, port: number, address: string): http.Agent {
    const key = `${host}\u0000${port}\u0000${address}`
    let agent = this.agents.get(key)
    if (agent) {
      this.agents.delete(key) // re-insert: most recently used last
    } else {
      agent = new http.Agent({
        keepAlive: true,
        maxSockets: 64,
        maxFreeSockets: 16,
        timeout: 60_000,
        scheduling: 'lifo',
      })
      if (this.agents.size >= this.limit) {
        const [oldestKey, oldest] = this.agents.entries().next().value as [string, http.Agent]
        oldest.destroy()
        this.agents.delete(oldestKey)
      }
    }
    this.agents.set(key, agent)
    return agent
  }

  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy()
    this.agents.clear()
  }
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

export class HttpForwarder {
  private readonly proxy = httpProxy.createProxyServer({
    xfwd: false,
    changeOrigin: false,
    ws: true,
    proxyTimeout: 0,
  })
  private readonly agents = new AgentPool()

  constructor(private readonly ctx: ProxyContext) {
    // Plain requests are stripped in handleRequest, before http-proxy builds the upstream request.
    this.proxy.on('proxyReqWs', (proxyReq, req) => stripRequestHeaders(proxyReq, req, true))
    this.proxy.on('proxyRes', (proxyRes) => stripResponseHeaders(proxyRes.headers))
  }

  close(): void {
    this.agents.destroy()
    this.proxy.close()
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
      if (hostHeaderCount(req) > 1) throw new BadProxyRequest('more than one Host header')
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
        const hostHeader = req.headers.host ?? ''
        const hp = /^(\[[^\]]+\]|[^:[\]]+)(?::[0-9]{1,5})?$/.exec(hostHeader)
        target = { host: (hp?.[1] ?? '').replace(/^\[|\]$/g, ''), port: mode.port(), path: url }
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
    const log = (decision: Decision, extra: { address?: string; error?: string } = {}): void =>
      record(this.ctx, {
        policy,
        protocol: request.protocol,
        decision,
        method: request.method,
        path: request.path,
        client: clientAddress(req.socket),
        startedAt,
        ...extra,
      })

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
    // Bytes up are counted from the request itself, not from socket.bytesRead: the head (and,
    // for a small body, the body too) was read before this point, and on a kept-alive or
    // pipelined connection the next request may be read while this one runs. Without this a
    // POST's upload was logged as 0 bytes up.
    let bytesUp = requestHeadBytes(req)
    req.on('data', (chunk: Buffer) => (bytesUp += chunk.length))
    const writtenBefore = socket.bytesWritten
    let error: string | undefined
    res.once('close', () => {
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
    // http-proxy copies req.headers into the upstream request synchronously inside web(), so
    // hand it the stripped set for that call only (its response passes still read the client's
    // Connection header). Stripping in the 'proxyReq' event instead was unsafe: that event
    // fires on the upstream socket, after the body may already have been written (all pooled
    // sockets busy), where removeHeader throws ERR_HTTP_HEADERS_SENT, an uncaught exception;
    // and it never fires for a request with an Expect header, whose Proxy-Authorization and
    // other hop-by-hop headers then went upstream.
    const clientHeaders = req.headers
    req.headers = forwardableHeaders(clientHeaders)
    try {
      this.proxy.web(req, res, this.optionsFor(req, target, address), onError)
    } finally {
      req.headers = clientHeaders
    }
    function onError(err: NodeJS.ErrnoException): void {
      error = `upstream: ${err.code ?? err.message}`
      if (res.headersSent) {
        res.destroy()
        return
      }
      const timedOut = err.code === 'ETIMEDOUT' || err.code === 'ESOCKETTIMEDOUT'
      const body = `isorun: ${timedOut ? 'upstream timed out' : 'cannot reach upstream'}: ${target.host}:${target.port} (${err.code ?? err.message})\n`
      res.writeHead(timedOut ? 504 : 502, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': String(Buffer.byteLength(body)),
      })
      res.end(body)
    }
  }

  /** WebSocket (and other) upgrades: decided like any request, then spliced after the upstream's 101. */
  async handleUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    head: Buffer,
    mode: ForwardMode,
  ): Promise<void> {
    socket.on('error', () => socket.destroy())
    // http-proxy sets no timeout on upgraded connections; an abandoned one must not stay forever.
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
    const options = { ...this.optionsFor(req, target, address), agent: false }
    this.proxy.ws(req, socket, head, options, (err: NodeJS.ErrnoException) => {
      error = `upstream: ${err.code ?? err.message}`
      if (!socket.destroyed)
        endAndClose(
          socket,
          upstreamFailureResponse(
            502,
            `cannot reach upstream ${target.host}:${target.port} (${err.code ?? err.message})`,
          ),
        )
    })
  }

  /** The log line of a forwarded request or upgrade, when it ends. */
  private logForwarded(
    approved: Approved,
    socket: net.Socket,
    outcome: { bytesUp: number; bytesDown: number; error?: string },
  ): void {
    const { policy, decision, request, address, startedAt } = approved
    record(this.ctx, {
      policy,
      protocol: request.protocol,
      decision,
      method: request.method,
      path: request.path,
      client: clientAddress(socket),
      address: address ?? `via ${this.ctx.parentProxy?.host ?? '?'}`,
      startedAt,
      ...outcome,
    })
  }

  private optionsFor(
    req: http.IncomingMessage,
    target: ForwardTarget,
    address: string | undefined,
  ): httpProxy.ServerOptions {
    const parent = this.ctx.parentProxy
    if (parent) {
      // Through a parent proxy: send it the absolute-form request for the checked target.
      req.url = `http://${authorityOf(target)}${target.path}`
      return { target: parent.href, toProxy: true, prependPath: false, agent: false }
    }
    const ip = address as string
    return {
      target: { protocol: 'http:', host: ip, port: target.port },
      agent: this.agents.get(target.host, target.port, ip),
      proxyTimeout: this.ctx.timeouts.idleMs,
    }
  }
}

/** The headers to send upstream: the client's minus hop-by-hop ones and those its Connection names. */
function forwardableHeaders(headers: http.IncomingHttpHeaders): http.IncomingHttpHeaders {
  const drop = new Set([...HOP_BY_HOP, ...connectionTokens(headers.connection)])
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => !drop.has(name) && !isProxyHeader(name)),
  )
}

/**
 * Proxy-* headers address this hop (credentials for the sandbox's proxy, its status), never the
 * origin; HOP_BY_HOP names the standard ones, this catches the rest (e.g. Proxy-Authentication-Info).
 */
function isProxyHeader(name: string): boolean {
  return name.toLowerCase().startsWith('proxy-')
}

function stripRequestHeaders(
  proxyReq: http.ClientRequest,
  req: http.IncomingMessage,
  keepUpgrade = false,
): void {
  for (const name of connectionTokens(req.headers.connection)) proxyReq.removeHeader(name)
  for (const name of HOP_BY_HOP) {
    if (keepUpgrade && (name === 'connection' || name === 'upgrade')) continue
    proxyReq.removeHeader(name)
  }
  for (const name of proxyReq.getHeaderNames()) if (isProxyHeader(name)) proxyReq.removeHeader(name)
}

function stripResponseHeaders(headers: http.IncomingHttpHeaders): void {
  for (const name of connectionTokens(headers.connection)) delete headers[name]
  for (const name of HOP_BY_HOP) if (name !== 'upgrade') delete headers[name]
  for (const name of Object.keys(headers)) if (isProxyHeader(name)) delete headers[name]
}
