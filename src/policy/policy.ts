// A policy is a profile compiled for matching: the mode, the allow and deny
// rule indexes, the endpoint rules, and the operator's exceptions to the
// special-purpose address check.

import { CidrTable, CidrError, parseCidr, type Cidr } from './cidr.js'
import { EndpointIndex, type EndpointSet } from './endpoint.js'
import { RuleIndex, type SourcedRule } from './matcher.js'
import { LimitError, LimitIndex, type LimitSource } from './limits.js'
import { parseListRule, RuleError } from './rule.js'
import { cidrsOfGroup, isSpecialGroup, SPECIAL_GROUPS } from './special.js'

/**
 * `report`: everything an allow-all policy allows is allowed, and each decision
 * also carries what the rules (read as an allow list) would have decided.
 */
export const MODES = ['allow-all', 'deny-all', 'allow-list', 'report'] as const
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
  /**
   * What happens to a request no rule allows in `allow-list` mode: `deny` (the
   * default) or `ask`: decide() marks the refusal `ask`, and the proxy holds the
   * request while the runner asks someone.
   */
  readonly onUnknown?: OnUnknown
  /** How long an `ask` waits for an answer before it counts as a deny. */
  readonly approvalTimeoutMs?: number
  /** Budgets per rule pattern. */
  readonly limits?: readonly LimitSource[]
}

export const ON_UNKNOWN = ['deny', 'ask'] as const
export type OnUnknown = (typeof ON_UNKNOWN)[number]
export const DEFAULT_APPROVAL_TIMEOUT_MS = 30_000
/** An approval may wait at most this long: a held connection costs a socket and memory. */
export const MAX_APPROVAL_TIMEOUT_MS = 10 * 60_000

/** Why an `onUnknown`/`approvalTimeoutMs` pair is wrong, or undefined; shared by every parser. */
export function approvalProblem(
  mode: Mode,
  onUnknown: unknown,
  timeoutMs: unknown,
): string | undefined {
  if (onUnknown !== undefined && !(ON_UNKNOWN as readonly unknown[]).includes(onUnknown))
    return `onUnknown must be ${ON_UNKNOWN.join(' or ')}`
  if (onUnknown === 'ask' && mode !== 'allow-list')
    return `onUnknown: ask needs mode allow-list (mode ${mode} never leaves a request unknown)`
  if (timeoutMs !== undefined) {
    if (
      typeof timeoutMs !== 'number' ||
      !Number.isInteger(timeoutMs) ||
      timeoutMs < 1 ||
      timeoutMs > MAX_APPROVAL_TIMEOUT_MS
    )
      return `approvalTimeoutMs must be a whole number of milliseconds from 1 to ${MAX_APPROVAL_TIMEOUT_MS}`
  }
  return undefined
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
  /** `ask` only in allow-list mode. */
  readonly onUnknown: OnUnknown
  readonly approvalTimeoutMs: number
  readonly limits: LimitIndex
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
  const approval = approvalProblem(spec.mode, spec.onUnknown, spec.approvalTimeoutMs)
  if (approval) throw new PolicyError(approval)
  let limits: LimitIndex
  try {
    limits = new LimitIndex(spec.limits ?? [])
  } catch (err) {
    if (err instanceof LimitError) throw new PolicyError(err.message)
    throw err
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
    onUnknown: spec.onUnknown ?? 'deny',
    approvalTimeoutMs: spec.approvalTimeoutMs ?? DEFAULT_APPROVAL_TIMEOUT_MS,
    limits,
    spec,
  }
}
