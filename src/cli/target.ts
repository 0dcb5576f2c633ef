// Parses a check target: a URL (`https://pypi.org/simple/`) or `host[:port]`.

import { UsageError } from './errors.js'

export interface CheckTarget {
  readonly host: string
  readonly port: number
  /** `http` when the target is a plain-HTTP URL (method and path apply), else `tls`. */
  readonly scheme: 'http' | 'tls'
  readonly path?: string
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443, 'ws:': 80, 'wss:': 443 }

export function parseCheckTarget(text: string): CheckTarget {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      throw new UsageError(`"${text}" is not a valid URL`)
    }
    const defaultPort = DEFAULT_PORTS[url.protocol]
    if (defaultPort === undefined)
      throw new UsageError(`unsupported URL scheme "${url.protocol}"; use http, https, ws or wss`)
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    const port = url.port === '' ? defaultPort : Number(url.port)
    const plain = url.protocol === 'http:' || url.protocol === 'ws:'
    return plain
      ? { host, port, scheme: 'http', path: url.pathname + url.search }
      : { host, port, scheme: 'tls' }
  }
  const m = /^(\[[^\]]+\]|[^:]+|[0-9a-f:]+)(?::([0-9]+))?$/i.exec(text)
  if (!m || (text.split(':').length > 2 && !text.startsWith('['))) {
    // A bare IPv6 address has no port part.
    if (text.includes(':') && !text.includes('[')) return { host: text, port: 443, scheme: 'tls' }
    throw new UsageError(`"${text}" is not a URL or host[:port]`)
  }
  const host = (m[1] as string).replace(/^\[|\]$/g, '')
  const port = m[2] === undefined ? 443 : Number(m[2])
  return { host, port, scheme: 'tls' }
}
