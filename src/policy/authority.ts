// Splitting `host[:port]` (a CONNECT target, a Host header, a URL authority, a
// listen address): one parser, so every place agrees on brackets and ports.

export interface Authority {
  /** Without IPv6 brackets; not canonicalised (parseHost does that). */
  readonly host: string
  readonly port: number | undefined
}

// A bracketed IPv6 address, or a host with no colon, bracket, slash, "@" or
// whitespace; then an optional port of up to five digits.
const AUTHORITY = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]/@\s]+))(?::([0-9]{1,5}))?$/

/** `host`, `host:port`, `[v6]` or `[v6]:port`; undefined for anything else or a port above 65535. */
export function splitAuthority(text: string): Authority | undefined {
  const m = AUTHORITY.exec(text)
  if (!m) return undefined
  const port = m[3] === undefined ? undefined : Number(m[3])
  if (port !== undefined && port > 65535) return undefined
  return { host: (m[1] ?? m[2]) as string, port }
}

/**
 * `host:port` as a URL authority, a Host header or a CONNECT target writes it
 * (an IPv6 address in brackets); just the host when `port` is undefined.
 */
export function joinAuthority(host: string, port?: number): string {
  const shown = host.includes(':') ? `[${host}]` : host
  return port === undefined ? shown : `${shown}:${port}`
}
