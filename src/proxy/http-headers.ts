// Which HTTP headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1)
// describe one connection and never do, nor do the ones a Connection header
// names, nor any Proxy-* header (they address this proxy: its credentials, its
// status). Framing headers are left to the HTTP stacks on each side.

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // The client's Expect is answered by this proxy's own server (100 Continue).
  'expect',
])

function isProxyHeader(lower: string): boolean {
  return lower.startsWith('proxy-')
}

/** Header names listed in Connection values (lowercase). */
function connectionTokens(values: readonly string[]): Set<string> {
  const out = new Set<string>()
  for (const value of values) {
    for (const token of value.split(',')) {
      const t = token.trim().toLowerCase()
      if (t !== '') out.add(t)
    }
  }
  return out
}

/**
 * The end-to-end headers of a raw header list (`[name, value, name, value, …]`),
 * as a flat list in the same order.
 */
export function endToEndHeaders(raw: readonly string[]): string[] {
  const connection: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'connection') connection.push(raw[i + 1] as string)
  }
  const named = connection.length > 0 ? connectionTokens(connection) : undefined
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || isProxyHeader(lower) || named?.has(lower)) continue
    out.push(name, raw[i + 1] as string)
  }
  return out
}

/** Whether a raw header list has a header of this (lowercase) name. */
export function hasHeader(raw: readonly string[], lower: string): boolean {
  for (let i = 0; i < raw.length; i += 2)
    if ((raw[i] as string).toLowerCase() === lower) return true
  return false
}

/** How many headers of this (lowercase) name a raw list has. */
export function countHeader(raw: readonly string[], lower: string): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === lower) n++
  return n
}

/**
 * The headers a request goes upstream with, as a flat list: its end-to-end
 * headers, and a Host (`host` when the client sent none: HTTP/1.0 may omit it).
 */
export function upstreamRequestHeaders(raw: readonly string[], host: string): string[] {
  const headers = endToEndHeaders(raw)
  if (!hasHeader(headers, 'host')) headers.push('Host', host)
  return headers
}
