// A policy is a profile compiled for matching: the mode, the allow and deny
// rule indexes, the endpoint rules, and the operator's exceptions to the
// special-purpose address check.

import { CidrTable, CidrError, parseCidr, type Cidr } from './cidr.js'
import { EndpointIndex, type EndpointSet } from './endpoint.js'
import { RuleIndex, type SourcedRule } from './matcher.js'
import { parseListRule, RuleError } from './rule.js'
import { cidrsOfGroup, isSpecialGroup, SPECIAL_GROUPS } from './special.js'

export const MODES = ['allow-all', 'deny-all', 'allow-list'] as const
export type Mode = (typeof MODES)[number]

export function isMode(value: unknown): value is Mode {
  return typeof value === 'string' && (MODES as readonly string[]).includes(value)
}

/** A rule as written, with the profile it came from. */
export interface RuleSource {
  readonly rule: string
  readonly from: string
}

/** Everything a policy is built from: what a resolved profile or an explicit network spec says. */
export interface PolicySpec {
  /** Profile name, or `custom` for an explicit allow/deny list. */
  readonly name: string
  readonly mode: Mode
  readonly allow: readonly RuleSource[]
  readonly deny: readonly RuleSource[]
  readonly endpoints?: readonly EndpointSet[]
  /**
   * Profiles (the `from` of rules; `custom` for an explicit network spec) marked
   * `inspect: true`: TLS to the hosts their allow rules allow is intercepted.
   */
  readonly inspect?: readonly string[]
}

/**
 * Operator settings that no profile can change: a sandbox's creator chooses
 * its profile, but only the operator may open special-purpose ranges.
 */
export interface OperatorSettings {
  /** CIDR blocks or group names (`private`, `loopback`, …) that resolved addresses may fall in. */
  readonly allowSpecial?: readonly string[]
  /**
   * CIDR blocks no policy and no allowance can open: isorun's own networks (the
   * egress network where the runner and the proxies' admin APIs live, the
   * sandbox subnets), which `allowSpecial: ['private']` would otherwise include.
   */
  readonly blockAlways?: readonly string[]
}

/** An operator's range: what they wrote, and how specific it is. */
export interface OperatorRange {
  readonly label: string
  readonly prefix: number
}

export interface Policy {
  readonly name: string
  readonly mode: Mode
  readonly allow: RuleIndex
  /** The `tcp:` allow rules alone: where raw TCP (bytes the proxy does not read) may travel. */
  readonly raw: RuleIndex
  readonly deny: RuleIndex
  readonly endpoints: EndpointIndex
  /** Profiles marked `inspect: true`. */
  readonly inspect: ReadonlySet<string>
  readonly allowSpecial: CidrTable<OperatorRange>
  readonly blockAlways: CidrTable<OperatorRange>
  readonly spec: PolicySpec
}

export class PolicyError extends Error {}

function compileRules(list: 'allow' | 'deny', sources: readonly RuleSource[]): SourcedRule[] {
  return sources.map(({ rule, from }) => {
    try {
      return { ...parseListRule(list, rule), from }
    } catch (err) {
      if (err instanceof RuleError)
        throw new PolicyError(
          from === 'custom' ? err.message : `${err.message} (in profile ${from})`,
        )
      throw err
    }
  })
}

/** Parses `private`, `loopback`, `10.0.0.0/8`, … into CIDR blocks. */
export function parseSpecialAllowances(
  entries: readonly string[],
): { cidr: Cidr; label: string }[] {
  const out: { cidr: Cidr; label: string }[] = []
  for (const raw of entries) {
    const entry = raw.trim()
    if (entry === '') continue
    if (isSpecialGroup(entry)) {
      for (const cidr of cidrsOfGroup(entry)) out.push({ cidr, label: entry })
      continue
    }
    try {
      const cidr = entry.includes('/')
        ? parseCidr(entry)
        : parseCidr(`${entry}/${entry.includes(':') ? 128 : 32}`)
      out.push({ cidr, label: entry })
    } catch (err) {
      if (err instanceof CidrError) {
        throw new PolicyError(
          `allowed private range "${entry}" is neither a CIDR block nor one of: ${SPECIAL_GROUPS.join(', ')}`,
        )
      }
      throw err
    }
  }
  return out
}

export function compilePolicy(spec: PolicySpec, operator: OperatorSettings = {}): Policy {
  const allowRules = compileRules('allow', spec.allow)
  const denyRules = compileRules('deny', spec.deny)
  if (spec.mode === 'deny-all' && allowRules.length > 0) {
    throw new PolicyError(
      `mode deny-all refuses everything, so its allow rules (${allowRules[0]?.text}, …) would never apply; use mode allow-list`,
    )
  }
  const blockAlways = new CidrTable<OperatorRange>()
  for (const text of operator.blockAlways ?? []) {
    try {
      const cidr = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`)
      blockAlways.add(cidr, { label: text, prefix: cidr.prefix })
    } catch (err) {
      if (err instanceof CidrError) throw new PolicyError(`blocked range "${text}": ${err.message}`)
      throw err
    }
  }
  const allowSpecial = new CidrTable<OperatorRange>()
  for (const { cidr, label } of parseSpecialAllowances(operator.allowSpecial ?? []))
    allowSpecial.add(cidr, { label, prefix: cidr.prefix })
  return {
    name: spec.name,
    mode: spec.mode,
    allow: new RuleIndex(allowRules),
    raw: new RuleIndex(allowRules.filter((rule) => rule.raw)),
    deny: new RuleIndex(denyRules),
    endpoints: new EndpointIndex(spec.endpoints ?? []),
    inspect: new Set(spec.inspect ?? []),
    allowSpecial,
    blockAlways,
    spec,
  }
}
