// IP address parsing and formatting. Pure functions, no I/O.
//
// IPv4 addresses are held as unsigned 32-bit numbers, IPv6 addresses as
// 128-bit bigints. Parsing is deliberately liberal on input (every spelling
// `inet_aton` accepts) and strict on output (one canonical text per address),
// because the canonical text is what rules and logs compare.

export interface IPv4 {
  readonly version: 4
  readonly value: number
}

export interface IPv6 {
  readonly version: 6
  readonly value: bigint
}

export type IP = IPv4 | IPv6

export function ipv4(value: number): IPv4 {
  return { version: 4, value: value >>> 0 }
}

export function ipv6(value: bigint): IPv6 {
  return { version: 6, value: BigInt.asUintN(128, value) }
}

const DECIMAL = /^(?:0|[1-9][0-9]*)$/
const OCTAL = /^0[0-7]+$/
const HEX = /^0x[0-9a-f]*$/i

/** One part of an inet_aton address: decimal, octal (leading 0) or hex (0x). */
function parseIPv4Part(part: string): number | undefined {
  if (part === '') return undefined
  if (HEX.test(part)) return part.length === 2 ? 0 : parseInt(part.slice(2), 16)
  if (OCTAL.test(part)) return parseInt(part.slice(1), 8)
  if (DECIMAL.test(part)) return Number(part)
  return undefined
}

/**
 * The value of the canonical spelling, four decimal parts of 0 to 255 without
 * leading zeros (what resolvers return, so decide() meets it on every request),
 * in one pass; undefined for any other text, which the general parser handles.
 */
function plainDottedQuad(text: string): number | undefined {
  if (text.length < 7 || text.length > 15) return undefined
  let value = 0
  let part = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return undefined // a leading zero: octal in inet_aton
      part = part * 10 + (c - 48)
      if (++digits > 3 || part > 255) return undefined
    } else if (c === 46 && digits > 0 && dots < 3) {
      value = value * 256 + part
      part = 0
      digits = 0
      dots++
    } else {
      return undefined
    }
  }
  if (dots !== 3 || digits === 0) return undefined
  return value * 256 + part
}

/**
 * Parses every spelling `inet_aton(3)` accepts: `a.b.c.d`, `a.b.c` (c is 16 bits),
 * `a.b` (b is 24 bits) and `a` (32 bits), each part decimal, octal or hex.
 * Returns undefined when the text is not an IPv4 address at all.
 */
export function parseIPv4(text: string): IPv4 | undefined {
  const plain = plainDottedQuad(text)
  if (plain !== undefined) return ipv4(plain)
  const parts = text.split('.')
  if (parts.length > 4) return undefined
  const numbers: number[] = []
  for (const part of parts) {
    // Very long digit strings would lose precision as numbers; none is valid anyway.
    if (part.length > 12) return undefined
    const n = parseIPv4Part(part)
    if (n === undefined || !Number.isFinite(n)) return undefined
    numbers.push(n)
  }
  const last = numbers.pop() as number
  for (const n of numbers) if (n > 255) return undefined
  const lastBits = 8 * (4 - numbers.length)
  if (last >= 2 ** lastBits) return undefined
  let value = 0
  for (const n of numbers) value = value * 256 + n
  value = value * 2 ** lastBits + last
  return ipv4(value)
}

/**
 * True when a host's last label looks numeric (digits, or 0x and hex digits), so
 * the host must be an IPv4 address or nothing, as the WHATWG URL parser decides.
 * One trailing dot is ignored.
 */
export function endsInNumber(host: string): boolean {
  let end = host.length
  if (end > 1 && host.charCodeAt(end - 1) === 46) end--
  const start = host.lastIndexOf('.', end - 1) + 1
  if (start >= end) return false
  let allDigits = true
  for (let i = start; i < end; i++) {
    const c = host.charCodeAt(i)
    if (c < 48 || c > 57) {
      allDigits = false
      break
    }
  }
  if (allDigits) return true
  return /^0x[0-9a-f]*$/i.test(host.slice(start, end))
}

export function formatIPv4(ip: IPv4): string {
  const v = ip.value
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
}

/**
 * Parses an IPv6 address (no brackets, no zone id) including `::` compression and a
 * trailing dotted quad. Returns undefined when the text is not one.
 */
export function parseIPv6(text: string): IPv6 | undefined {
  if (text.length < 2 || text.length > 45 || !text.includes(':')) return undefined
  if (!/^[0-9a-f:.]+$/i.test(text)) return undefined
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return []
    const groups = s.split(':')
    const out: number[] = []
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i] as string
      if (i === groups.length - 1 && g.includes('.')) {
        // Embedded dotted quad: strictly four decimal parts here, as RFC 4291 says.
        const quad = g.split('.')
        if (quad.length !== 4 || !quad.every((p) => DECIMAL.test(p) && Number(p) <= 255))
          return undefined
        const v = parseIPv4(g)
        if (!v) return undefined
        out.push(v.value >>> 16, v.value & 0xffff)
        continue
      }
      if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  const head = parseGroups(halves[0] as string)
  const tail = halves.length === 2 ? parseGroups(halves[1] as string) : []
  if (!head || !tail) return undefined
  let groups: number[]
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length
    if (missing < 1) return undefined
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail]
  } else {
    groups = head
  }
  if (groups.length !== 8) return undefined
  let value = 0n
  for (const g of groups) value = (value << 16n) | BigInt(g)
  return ipv6(value)
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run of zero groups as `::`. */
export function formatIPv6(ip: IPv6): string {
  const groups: number[] = []
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn))
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  const left = hex.slice(0, bestStart).join(':')
  const right = hex.slice(bestStart + bestLen).join(':')
  return `${left}::${right}`
}

export function formatIP(ip: IP): string {
  return ip.version === 4 ? formatIPv4(ip) : formatIPv6(ip)
}

/** Parses an IPv4 (any inet_aton spelling) or IPv6 (optionally bracketed) literal. */
export function parseIP(text: string): IP | undefined {
  const unbracketed = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  if (unbracketed.includes(':')) return parseIPv6(unbracketed)
  return parseIPv4(unbracketed)
}

const MAPPED_PREFIX = 0xffffn << 32n // ::ffff:0:0/96
const NAT64_PREFIX = 0x0064ff9bn << 96n // 64:ff9b::/96
const SIX_TO_FOUR = 0x2002n // 2002::/16

/**
 * The IPv4 address an IPv6 address carries, for the forms that reach an IPv4 host:
 * IPv4-mapped (::ffff:0:0/96), NAT64 well-known prefix (64:ff9b::/96), 6to4
 * (2002::/16) and the deprecated IPv4-compatible form (::/96, except :: and ::1).
 */
export function embeddedIPv4(ip: IPv6): IPv4 | undefined {
  const v = ip.value
  const low32 = Number(v & 0xffffffffn)
  const high96 = v >> 32n
  if (high96 === MAPPED_PREFIX >> 32n) return ipv4(low32)
  if (high96 === NAT64_PREFIX >> 32n) return ipv4(low32)
  if (v >> 112n === SIX_TO_FOUR) return ipv4(Number((v >> 80n) & 0xffffffffn))
  if (high96 === 0n && low32 > 1) return ipv4(low32)
  return undefined
}

/**
 * The IPv4 block an IPv6 block stands for when every address in it carries an
 * IPv4 address (the forms embeddedIPv4 unwraps): `::ffff:10.0.0.0/104` is
 * 10.0.0.0/8, `2002:a00::/24` is 10.0.0.0/8, and a 6to4 block longer than /48
 * holds spellings of one IPv4 address. Undefined for any other block, including
 * IPv4-compatible ones that hold :: or ::1.
 */
export function embeddedIPv4Block(
  network: bigint,
  prefix: number,
): { readonly ip: IPv4; readonly prefix: number } | undefined {
  const low32 = Number(network & 0xffffffffn)
  const high96 = network >> 32n
  if (prefix >= 96) {
    const carriesIPv4 =
      high96 === MAPPED_PREFIX >> 32n ||
      high96 === NAT64_PREFIX >> 32n ||
      // An aligned block starting at ::2 or above holds neither :: nor ::1.
      (high96 === 0n && low32 > 1)
    if (carriesIPv4) return { ip: ipv4(low32), prefix: prefix - 96 }
  }
  if (prefix >= 16 && network >> 112n === SIX_TO_FOUR) {
    return { ip: ipv4(Number((network >> 80n) & 0xffffffffn)), prefix: Math.min(prefix - 16, 32) }
  }
  return undefined
}

/** The address a decision is about: IPv6 forms that carry an IPv4 address become that address. */
export function unwrapIP(ip: IP): IP {
  if (ip.version === 4) return ip
  return embeddedIPv4(ip) ?? ip
}
