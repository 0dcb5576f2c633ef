// The compiled rule index. Lookup cost depends on the number of labels in the
// host (for names) or the number of distinct prefix lengths (for addresses),
// never on the number of rules: a hash of exact names, a hash of wildcard
// suffixes walked label by label, and a CIDR table.

import { CidrTable } from './cidr.js'
import type { CanonicalHost } from './host.js'
import type { IP } from './ip.js'
import type { Rule } from './rule.js'
import { SuffixTable } from './suffix-table.js'

/** A rule together with the profile it came from. */
export interface SourcedRule extends Rule {
  readonly from: string
}

/**
 * A rule as the index stores it, and what a lookup returns: what decisions
 * need (canonical text, origin, ports as two numbers) in one flat object of one
 * shape, so a lookup touches little memory and stays monomorphic, which matters
 * with thousands of rules. Rules with the same key form a list through `next`.
 */
export class RuleMatch {
  readonly canonical: string
  readonly from: string
  /** A `tcp:` rule: raw TCP may travel where it matches. */
  readonly raw: boolean
  /** -1 for the 80/443 default. */
  private readonly lo: number
  private readonly hi: number
  next: RuleMatch | undefined = undefined

  constructor(readonly rule: SourcedRule) {
    const ports = rule.ports
    this.canonical = rule.canonical
    this.from = rule.from
    this.raw = rule.raw
    this.lo = ports.kind === 'default' ? -1 : ports.kind === 'any' ? 1 : ports.from
    this.hi = ports.kind === 'default' ? -1 : ports.kind === 'any' ? 65535 : ports.to
  }

  /** `port` undefined matches rules for any port. */
  coversPort(port: number | undefined): boolean {
    return (
      port === undefined ||
      (this.lo === -1 ? port === 80 || port === 443 : port >= this.lo && port <= this.hi)
    )
  }
}

/** The first rule of a list that covers the port. */
function firstForPort(
  head: RuleMatch | undefined,
  port: number | undefined,
): RuleMatch | undefined {
  for (let m = head; m !== undefined; m = m.next) if (m.coversPort(port)) return m
  return undefined
}

function firstInList(list: readonly RuleMatch[], port: number | undefined): RuleMatch | undefined {
  for (const m of list) if (m.coversPort(port)) return m
  return undefined
}

/** Appends to the list stored under a key. */
function append(map: Map<string, RuleMatch>, key: string, match: RuleMatch): void {
  let tail = map.get(key)
  if (!tail) {
    map.set(key, match)
    return
  }
  while (tail.next) tail = tail.next
  tail.next = match
}

export class RuleIndex {
  private readonly exact = new Map<string, RuleMatch>()
  private readonly wildcard = new SuffixTable<RuleMatch>()
  private readonly any: RuleMatch[] = []
  private readonly cidrs = new CidrTable<RuleMatch>()
  readonly rules: readonly SourcedRule[]

  constructor(rules: readonly SourcedRule[]) {
    this.rules = rules
    for (const rule of rules) {
      const host = rule.host
      const entry = new RuleMatch(rule)
      switch (host.kind) {
        case 'exact':
          append(this.exact, host.name, entry)
          break
        case 'wildcard':
          this.wildcard.add(host.suffix, entry)
          break
        case 'any':
          this.any.push(entry)
          break
        case 'cidr':
          this.cidrs.add(host.cidr, entry)
          break
      }
    }
  }

  get size(): number {
    return this.rules.length
  }

  /**
   * The most specific rule matching a name on a port (exact, then the longest
   * wildcard suffix, then `*`). `port` undefined matches rules for any port.
   */
  matchName(name: string, port: number | undefined): RuleMatch | undefined {
    const exact = firstForPort(this.exact.get(name), port)
    if (exact) return exact
    const wildcard = this.wildcard.longestMatch(name, (list) => firstInList(list, port))
    if (wildcard) return wildcard
    return this.any.length > 0 ? firstInList(this.any, port) : undefined
  }

  /** The most specific CIDR rule containing an address, then `*`. */
  matchIP(ip: IP, port: number | undefined): RuleMatch | undefined {
    return (
      this.matchAddress(ip, port) ?? (this.any.length > 0 ? firstInList(this.any, port) : undefined)
    )
  }

  match(host: CanonicalHost, port: number | undefined): RuleMatch | undefined {
    return host.kind === 'name' ? this.matchName(host.name, port) : this.matchIP(host.ip, port)
  }

  /** CIDR rules only: used for the addresses a name resolved to. */
  matchAddress(ip: IP, port: number | undefined): RuleMatch | undefined {
    if (this.cidrs.size === 0) return undefined
    return firstInList(this.cidrs.lookup(ip), port)
  }
}
