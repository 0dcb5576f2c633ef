// CIDR blocks and a table that answers "which blocks contain this address" in
// time that depends on the number of distinct prefix lengths, not on the
// number of blocks.

import { embeddedIPv4Block, formatIP, parseIPv4, parseIPv6, type IP } from './ip.js'

export interface Cidr {
  readonly version: 4 | 6
  /** Network address with host bits cleared. */
  readonly network: number | bigint
  readonly prefix: number
}

function maskV4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

function maskV6(prefix: number): bigint {
  return prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n)
}

export function networkOf(ip: IP, prefix: number): number | bigint {
  return ip.version === 4 ? (ip.value & maskV4(prefix)) >>> 0 : ip.value & maskV6(prefix)
}

export function cidrOf(ip: IP, prefix: number): Cidr {
  return { version: ip.version, network: networkOf(ip, prefix), prefix }
}

export function formatCidr(cidr: Cidr): string {
  const ip: IP =
    cidr.version === 4
      ? { version: 4, value: cidr.network as number }
      : { version: 6, value: cidr.network as bigint }
  return `${formatIP(ip)}/${cidr.prefix}`
}

export class CidrError extends Error {}

/**
 * Parses `a.b.c.d/n` or `v6::/n`. The address must be written in plain dotted-quad
 * or RFC 4291 form here: CIDRs come from operators, and an unusual spelling is
 * more likely a typo than an intent. Host bits must be zero. An IPv6 block of
 * addresses that carry IPv4 ones (`::ffff:10.0.0.0/104`) is read as that IPv4
 * block, since addresses are unwrapped the same way before they are matched.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/')
  if (slash < 0)
    throw new CidrError(`"${text}" is not a CIDR block: write address/prefix, e.g. 10.0.0.0/8`)
  const addrText = text.slice(0, slash)
  const prefixText = text.slice(slash + 1)
  const ip = addrText.includes(':') ? parseIPv6(addrText) : parseStrictIPv4(addrText)
  if (!ip) throw new CidrError(`"${addrText}" in "${text}" is not an IP address`)
  const max = ip.version === 4 ? 32 : 128
  if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > max) {
    throw new CidrError(
      `prefix length "${prefixText}" in "${text}" must be a number from 0 to ${max}`,
    )
  }
  const prefix = Number(prefixText)
  const cidr = cidrOf(ip, prefix)
  if (cidr.network !== ip.value) {
    throw new CidrError(
      `"${text}" has host bits set after /${prefix}: did you mean ${formatCidr(cidr)}?`,
    )
  }
  const v4 = ip.version === 6 ? embeddedIPv4Block(ip.value, prefix) : undefined
  return v4 ? cidrOf(v4.ip, v4.prefix) : cidr
}

function parseStrictIPv4(text: string) {
  if (
    !/^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/.test(
      text,
    )
  ) {
    return undefined
  }
  return parseIPv4(text)
}

/**
 * A set of CIDR blocks, each carrying a value. `lookup` returns the values of
 * every block that contains an address, most specific first.
 */
export class CidrTable<T> {
  // One map per (version, prefix length) in use, keyed by network address.
  private readonly byPrefix = new Map<
    string,
    { version: 4 | 6; prefix: number; map: Map<number | bigint, T[]> }
  >()
  private order: { version: 4 | 6; prefix: number; map: Map<number | bigint, T[]> }[] = []
  private count = 0

  add(cidr: Cidr, value: T): void {
    const key = `${cidr.version}/${cidr.prefix}`
    let slot = this.byPrefix.get(key)
    if (!slot) {
      slot = { version: cidr.version, prefix: cidr.prefix, map: new Map() }
      this.byPrefix.set(key, slot)
      this.order = [...this.byPrefix.values()].sort((a, b) => b.prefix - a.prefix)
    }
    const list = slot.map.get(cidr.network)
    if (list) list.push(value)
    else slot.map.set(cidr.network, [value])
    this.count++
  }

  get size(): number {
    return this.count
  }

  /** The value of the most specific block containing an address, without building a list. */
  first(ip: IP): T | undefined {
    for (const slot of this.order) {
      if (slot.version !== ip.version) continue
      const list = slot.map.get(networkOf(ip, slot.prefix))
      if (list) return list[0]
    }
    return undefined
  }

  lookup(ip: IP): T[] {
    const out: T[] = []
    for (const slot of this.order) {
      if (slot.version !== ip.version) continue
      const list = slot.map.get(networkOf(ip, slot.prefix))
      if (list) out.push(...list)
    }
    return out
  }
}
