// The compiled rule index. Lookup cost depends on the number of labels in the
// host (for names) or the number of distinct prefix lengths (for addresses),
// never on the number of rules: a hash of exact names, a hash of wildcard
// suffixes walked label by label, and a CIDR table.

import { CidrTable } from './cidr.js'
import type { CanonicalHost } from './host.js'
import type { IP } from './ip.js'
import { portMatches, type Rule } from './rule.js'
import { SuffixTable } from './suffix-table.js'

/** A rule together with the profile it came from. */
export interface SourcedRule extends Rule {
  readonly from: string
}

function firstForPort(
  rules: readonly SourcedRule[] | undefined,
  port: number | undefined,
): SourcedRule | undefined {
  if (!rules) return undefined
  for (const rule of rules) if (port === undefined || portMatches(rule.ports, port)) return rule
  return undefined
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}

export class RuleIndex {
  private readonly exact = new Map<string, SourcedRule[]>()
  private readonly wildcard = new SuffixTable<SourcedRule>()
  private readonly any: SourcedRule[] = []
  private readonly cidrs = new CidrTable<SourcedRule>()
  readonly rules: readonly SourcedRule[]

  constructor(rules: readonly SourcedRule[]) {
    this.rules = rules
    for (const rule of rules) {
      const host = rule.host
      switch (host.kind) {
        case 'exact':
          push(this.exact, host.name, rule)
          break
        case 'wildcard':
          this.wildcard.add(host.suffix, rule)
          break
        case 'any':
          this.any.push(rule)
          break
        case 'cidr':
          this.cidrs.add(host.cidr, rule)
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
  matchName(name: string, port: number | undefined): SourcedRule | undefined {
    const exact = firstForPort(this.exact.get(name), port)
    if (exact) return exact
    const wildcard = this.wildcard.longestMatch(name, (rules) => firstForPort(rules, port))
    if (wildcard) return wildcard
    return firstForPort(this.any, port)
  }

  /** The most specific CIDR rule containing an address, then `*`. */
  matchIP(ip: IP, port: number | undefined): SourcedRule | undefined {
    if (this.cidrs.size > 0) {
      for (const rule of this.cidrs.lookup(ip))
        if (port === undefined || portMatches(rule.ports, port)) return rule
    }
    return firstForPort(this.any, port)
  }

  match(host: CanonicalHost, port: number | undefined): SourcedRule | undefined {
    return host.kind === 'name' ? this.matchName(host.name, port) : this.matchIP(host.ip, port)
  }

  /** CIDR rules only: used for the addresses a name resolved to. */
  matchAddress(ip: IP, port: number | undefined): SourcedRule | undefined {
    if (this.cidrs.size === 0) return undefined
    for (const rule of this.cidrs.lookup(ip))
      if (port === undefined || portMatches(rule.ports, port)) return rule
    return undefined
  }
}
