// Every way of writing one IP address that the host canonicaliser accepts, for
// the property that all of them decide the same way: inet_aton forms of IPv4
// (one to four parts, each decimal, octal or hex), the IPv6 forms that carry
// an IPv4 address (mapped, IPv4-compatible, 6to4, NAT64), and IPv6 text in its
// variants (zero compression anywhere it fits, leading zeros, upper case, a
// dotted-quad tail, brackets), each with or without one trailing dot where a
// name may have one.

import type { FuzzedDataProvider } from '@jazzer.js/core/dist/FuzzedDataProvider.js'

type Radix = 'dec' | 'oct' | 'hex'
const RADIXES: Radix[] = ['dec', 'oct', 'hex']

function part(value: number, radix: Radix, upper: boolean, zeros: number): string {
  if (radix === 'dec') return String(value)
  if (radix === 'oct') return '0'.repeat(zeros + 1) + value.toString(8)
  const digits = '0'.repeat(zeros) + value.toString(16)
  return (upper ? '0X' : '0x') + (upper ? digits.toUpperCase() : digits)
}

/** The inet_aton spellings of a 32-bit value: a.b.c.d, a.b.c, a.b and a, in mixed radixes. */
export function ipv4Spellings(value: number, fdp: FuzzedDataProvider): string[] {
  const bytes = [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]
  const forms: number[][] = [
    bytes,
    [bytes[0]!, bytes[1]!, (value & 0xffff) >>> 0],
    [bytes[0]!, (value & 0xffffff) >>> 0],
    [value >>> 0],
  ]
  const out: string[] = []
  for (const parts of forms) {
    out.push(parts.join('.'))
    for (const radix of RADIXES) out.push(parts.map((p) => part(p, radix, false, 0)).join('.'))
    // One mix per form, radixes, case and leading zeros chosen by the input.
    out.push(
      parts
        .map((p) =>
          part(p, fdp.pickValue(RADIXES), fdp.consumeBoolean(), fdp.consumeIntegralInRange(0, 3)),
        )
        .join('.'),
    )
  }
  return out
}

/** Eight 16-bit groups of a 128-bit value. */
function groupsOf(value: bigint): number[] {
  const groups: number[] = []
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn))
  return groups
}

function hexGroup(g: number, pad: boolean, upper: boolean): string {
  const text = pad ? g.toString(16).padStart(4, '0') : g.toString(16)
  return upper ? text.toUpperCase() : text
}

/**
 * IPv6 text for a 128-bit value: full, with `::` over each run of zero groups
 * (any run, not only the longest), with the last 32 bits as a dotted quad, in
 * upper case and with leading zeros.
 */
export function ipv6Spellings(value: bigint, fdp: FuzzedDataProvider): string[] {
  const groups = groupsOf(value)
  const styles = [
    { pad: false, upper: false },
    { pad: true, upper: true },
    { pad: fdp.consumeBoolean(), upper: fdp.consumeBoolean() },
  ]
  const out: string[] = []
  for (const { pad, upper } of styles) {
    for (const quadTail of [false, true]) {
      const head = quadTail ? groups.slice(0, 6) : groups
      const texts = head.map((g) => hexGroup(g, pad, upper))
      const tail = quadTail
        ? [`${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`]
        : []
      out.push([...texts, ...tail].join(':'))
      // `::` over every run of zero groups in the hex part.
      for (let start = 0; start < head.length; start++) {
        if (head[start] !== 0 || (start > 0 && head[start - 1] === 0)) continue
        let end = start
        while (end < head.length && head[end] === 0) end++
        for (let stop = start + 1; stop <= end; stop++) {
          const left = texts.slice(0, start).join(':')
          const right = [...texts.slice(stop), ...tail].join(':')
          out.push(`${left}::${right}`)
        }
      }
    }
  }
  return out
}

const MAPPED = 0xffffn << 32n
const NAT64 = 0x64ff9bn << 96n
const SIX_TO_FOUR = 0x2002n << 112n

/** IPv6 values that carry a 32-bit IPv4 value: mapped, NAT64, 6to4 (any suffix), and compatible. */
export function embeddings(v4: number, fdp: FuzzedDataProvider): bigint[] {
  const v = BigInt(v4 >>> 0)
  const suffix = fdp.consumeBigIntegralInRange(0n, (1n << 80n) - 1n)
  const out = [MAPPED | v, NAT64 | v, SIX_TO_FOUR | (v << 80n) | suffix]
  // ::0 and ::1 are the unspecified and loopback addresses, not IPv4-compatible ones.
  if (v4 > 1) out.push(v)
  return out
}

/** Adds the bracketed and trailing-dot variants the canonicaliser also accepts. */
export function withDecorations(spellings: readonly string[]): string[] {
  const out: string[] = []
  for (const s of spellings) {
    if (s.includes(':')) out.push(s, `[${s}]`)
    else out.push(s, `${s}.`)
  }
  return out
}

/** Every spelling of an IPv4 address: its inet_aton forms and the IPv6 forms that carry it. */
export function allSpellingsOfIPv4(v4: number, fdp: FuzzedDataProvider): string[] {
  const v6 = embeddings(v4, fdp).flatMap((value) => ipv6Spellings(value, fdp))
  return withDecorations([...ipv4Spellings(v4, fdp), ...v6])
}
