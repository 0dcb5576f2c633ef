// Resolves a profile's includes into one flat list of rules, each tagged with
// the profile it came from. The including profile's mode governs; the modes of
// included profiles do not matter (they are building blocks of rules).

import type {
  EndpointSet,
  LimitSource,
  Mode,
  OnUnknown,
  PolicySpec,
  RuleSource,
} from '../policy/index.js'
import { ProfileError, type ProfileDefinition } from './parse-profile.js'

export interface ResolvedProfile {
  readonly name: string
  readonly description: string
  readonly mode: Mode
  readonly file: string
  /** Every profile merged in, transitively, in the order they were merged. */
  readonly includes: readonly string[]
  readonly allow: readonly RuleSource[]
  readonly deny: readonly RuleSource[]
  readonly endpoints: readonly EndpointSet[]
  /** This profile and every included one marked `inspect: true`. */
  readonly inspect: readonly string[]
  /** The including profile's, like the mode. */
  readonly onUnknown?: OnUnknown
  readonly approvalTimeoutMs?: number
  /** Every profile's limits; for a pattern set twice, the including profile's wins. */
  readonly limits: readonly LimitSource[]
}

/** Looks up a definition by name across the catalogue's directories. */
export type DefinitionLookup = (name: string) => ProfileDefinition | undefined

function includeError(def: ProfileDefinition, index: number, problem: string): ProfileError {
  const at = def.includeAt[index] ?? { line: 1, column: 1 }
  return new ProfileError(def.file, at.line, at.column, 'include', problem)
}

export function resolveProfile(name: string, lookup: DefinitionLookup): ResolvedProfile {
  const root = lookup(name)
  if (!root) throw new Error(`unknown profile "${name}"`)
  const allow: RuleSource[] = []
  const deny: RuleSource[] = []
  const endpoints: EndpointSet[] = []
  const includes: string[] = []
  const inspect: string[] = []
  const limits: LimitSource[] = []
  const seenLimits = new Set<string>()
  const seenAllow = new Set<string>()
  const seenDeny = new Set<string>()
  const visited = new Set<string>()

  const visit = (def: ProfileDefinition, path: readonly string[]): void => {
    visited.add(def.name)
    if (def.inspect) inspect.push(def.name)
    const addOnce = (rule: string, seen: Set<string>, list: RuleSource[]): void => {
      if (seen.has(rule)) return
      seen.add(rule)
      list.push({ rule, from: def.name })
    }
    for (const rule of def.allow) addOnce(rule, seenAllow, allow)
    for (const rule of def.deny) addOnce(rule, seenDeny, deny)
    for (const e of def.endpoints) endpoints.push({ host: e.host, rules: e.rules, from: def.name })
    for (const limit of def.limits) {
      if (seenLimits.has(limit.pattern)) continue
      seenLimits.add(limit.pattern)
      limits.push(limit)
    }
    def.include.forEach((child, i) => {
      if (path.includes(child)) {
        throw includeError(
          def,
          i,
          `include cycle ${[...path, child].join(' -> ')}; remove one of these includes`,
        )
      }
      if (visited.has(child)) return // diamond: already merged through another path
      const childDef = lookup(child)
      if (!childDef)
        throw includeError(
          def,
          i,
          `includes unknown profile "${child}"; check the name or add ${child}.yaml`,
        )
      includes.push(child)
      visit(childDef, [...path, child])
    })
  }
  visit(root, [root.name])
  return {
    name: root.name,
    description: root.description,
    mode: root.mode,
    file: root.file,
    includes,
    allow,
    deny,
    endpoints,
    inspect,
    ...(root.onUnknown !== undefined ? { onUnknown: root.onUnknown } : {}),
    ...(root.approvalTimeoutMs !== undefined ? { approvalTimeoutMs: root.approvalTimeoutMs } : {}),
    limits,
  }
}

export function policySpecOf(profile: ResolvedProfile): PolicySpec {
  return {
    name: profile.name,
    mode: profile.mode,
    allow: profile.allow,
    deny: profile.deny,
    endpoints: profile.endpoints,
    inspect: profile.inspect,
    ...(profile.onUnknown !== undefined ? { onUnknown: profile.onUnknown } : {}),
    ...(profile.approvalTimeoutMs !== undefined
      ? { approvalTimeoutMs: profile.approvalTimeoutMs }
      : {}),
    ...(profile.limits.length > 0 ? { limits: profile.limits } : {}),
  }
}
