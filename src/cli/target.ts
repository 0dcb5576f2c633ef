// Parses a check target: a URL (`https://pypi.org/simple/`), `tcp://host:port`
// (raw TCP: SSH, databases) or `host[:port]`.

import { splitAuthority } from '../policy/index.js'
import { UsageError } from './errors.js'

export interface CheckTarget {
  readonly host: string
  readonly port: number
  /**
   * `http` when the target is a plain-HTTP URL (method and path apply), `tcp` for
   * raw TCP (bytes the proxy does not read), else `tls`.
   */
  readonly scheme: 'http' | 'tls' | 'tcp'
  /** The URL's path and query; absent for `host[:port]`. */
  readonly path?: string
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443, 'ws:': 80, 'wss:': 443 }

export function parseCheckTarget(text: string): CheckTarget {
  if (/^tcp:\/\//i.test(text)) {
    const authority = splitAuthority(text.slice('tcp://'.length))
    if (authority?.port === undefined || authority.port < 1)
      throw new UsageError(`"${text}" needs a host and a port, e.g. tcp://github.com:22`)
    return { host: authority.host, port: authority.port, scheme: 'tcp' }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      throw new UsageError(`"${text}" is not a valid URL`)
    }
    const defaultPort = DEFAULT_PORTS[url.protocol]
    if (defaultPort === undefined)
      throw new UsageError(
        `unsupported URL scheme "${url.protocol}"; use http, https, ws, wss or tcp`,
      )
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    const port = url.port === '' ? defaultPort : Number(url.port)
    const plain = url.protocol === 'http:' || url.protocol === 'ws:'
    return { host, port, scheme: plain ? 'http' : 'tls', path: url.pathname + url.search }
  }
  // A bare IPv6 address (several colons, no brackets) has no port part.
  if (text.split(':').length > 2 && !text.startsWith('['))
    return { host: text, port: 443, scheme: 'tls' }
  const authority = splitAuthority(text)
  if (!authority) throw new UsageError(`"${text}" is not a URL or host[:port]`)
  return { host: authority.host, port: authority.port ?? 443, scheme: 'tls' }
}
