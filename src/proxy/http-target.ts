// The target stage of a plain HTTP request the proxy read: whom it is for, and
// what decide() is asked about it. Absolute-form targets (the HTTP proxy) are
// parsed here, strictly; on the transparent listener the Host header names the
// target; in a tunnel the tunnel's target is the target, and the Host (and any
// absolute URI) must name it too.

import type http from 'node:http'
import {
  joinAuthority,
  overrideHeadersIn,
  splitAuthority,
  withoutFragment,
  type EgressRequest,
} from '../policy/index.js'
import { countHeader } from './http-headers.js'
import type { HeldAnswer } from './exchange.js'

export interface ForwardTarget {
  readonly host: string
  readonly port: number
  /** The path and query, as decided and forwarded (never a fragment). */
  readonly path: string
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
      /** The approval that let the tunnel through: it covers the requests it carries. */
      readonly approved?: HeldAnswer
    }

/** A request the proxy cannot take (400): the message says what is wrong. */
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

/** `host:port` as a Host header writes it (IPv6 in brackets, no port for 80). */
export function hostHeaderOf(target: { host: string; port: number }): string {
  return joinAuthority(target.host, target.port === 80 ? undefined : target.port)
}

/**
 * The target of a request and what decide() is asked about it; throws
 * BadProxyRequest. `upgrade`: the protocol an upgrade request asks for.
 */
export function targetOf(
  req: http.IncomingMessage,
  mode: ForwardMode,
  upgrade?: string,
): { target: ForwardTarget; request: EgressRequest } {
  if (countHeader(req.rawHeaders, 'host') > 1)
    throw new BadProxyRequest('more than one Host header')
  const url = req.url ?? ''
  let target: ForwardTarget
  /** The authority an absolute-form target names where the Host header names the target. */
  let targetAuthority: string | undefined
  if (mode.kind === 'proxy') {
    target = parseAbsoluteTarget(url)
  } else {
    let path = url
    if (url.startsWith('/')) {
      path = withoutFragment(url)
    } else {
      const absolute = parseAbsoluteTarget(url)
      path = absolute.path
      targetAuthority = absolute.authority
    }
    // In a tunnel the target is the tunnel's; transparently, the Host names it, and
    // decide() checks that it names a valid host on this port.
    target =
      mode.kind === 'tunnel'
        ? { host: mode.host, port: mode.port, path }
        : { host: splitAuthority(req.headers.host ?? '')?.host ?? '', port: mode.port(), path }
  }
  // HTTP/1.0 may omit Host; the target names the host then, and upstream gets it as Host.
  if (req.headers.host === undefined && mode.kind !== 'transparent')
    req.headers.host = hostHeaderOf(target)
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
  return { target, request }
}
