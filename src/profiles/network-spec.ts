// An explicit network policy, given instead of a profile name when a sandbox is
// created: `{ allow, deny }`, optionally with a mode and profiles to include.
// It is validated here with the same rule parser as profile files.

import {
  isMode,
  MODES,
  parseListRule,
  RuleError,
  type Mode,
  type PolicySpec,
  type RuleSource,
} from '../policy/index.js'
import type { ProfileCatalogue } from './catalogue.js'

export interface NetworkSpec {
  /** Default `allow-list`: only what `allow` (and the includes) name is reachable. */
  readonly mode?: Mode
  readonly include?: readonly string[]
  readonly allow?: readonly string[]
  readonly deny?: readonly string[]
}

export class NetworkSpecError extends Error {
  constructor(
    message: string,
    /** `unknown-profile` when an include names no profile; `invalid-network` otherwise. */
    readonly code: 'invalid-network' | 'unknown-profile' = 'invalid-network',
  ) {
    super(message)
  }
}

export const CUSTOM_POLICY_NAME = 'custom'

function ruleList(value: unknown, field: 'allow' | 'deny'): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new NetworkSpecError(`network.${field} must be a list of rules`)
  return value.map((item, i) => {
    if (typeof item !== 'string')
      throw new NetworkSpecError(`network.${field}[${i}] must be a string`)
    try {
      return parseListRule(field, item).text
    } catch (err) {
      if (err instanceof RuleError)
        throw new NetworkSpecError(`network.${field}[${i}]: ${err.message}`)
      throw err
    }
  })
}

/** Validates an explicit network spec (from JSON) and turns it into a policy spec. */
export function networkPolicySpec(input: unknown, catalogue: ProfileCatalogue): PolicySpec {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new NetworkSpecError(
      'network must be an object such as { "allow": ["pypi.org"], "deny": [] }',
    )
  }
  const spec = input as Record<string, unknown>
  for (const key of Object.keys(spec)) {
    if (!['mode', 'include', 'allow', 'deny'].includes(key)) {
      throw new NetworkSpecError(`network.${key} is not a field; use mode, include, allow and deny`)
    }
  }
  const mode = spec.mode ?? 'allow-list'
  if (!isMode(mode)) throw new NetworkSpecError(`network.mode must be one of ${MODES.join(', ')}`)
  const allow: RuleSource[] = ruleList(spec.allow, 'allow').map((rule) => ({
    rule,
    from: CUSTOM_POLICY_NAME,
  }))
  const deny: RuleSource[] = ruleList(spec.deny, 'deny').map((rule) => ({
    rule,
    from: CUSTOM_POLICY_NAME,
  }))
  if (mode === 'deny-all' && allow.length > 0) {
    throw new NetworkSpecError(
      'network.mode deny-all refuses everything, so allow rules would never apply; use allow-list',
    )
  }
  const include = spec.include ?? []
  if (!Array.isArray(include))
    throw new NetworkSpecError('network.include must be a list of profile names')
  const endpoints = []
  for (const name of include) {
    const profile = typeof name === 'string' ? catalogue.get(name) : undefined
    if (!profile) {
      throw new NetworkSpecError(
        `network.include names unknown profile ${JSON.stringify(name)}; known profiles: ${catalogue.names().join(', ')}`,
        'unknown-profile',
      )
    }
    allow.push(...profile.allow)
    deny.push(...profile.deny)
    endpoints.push(...profile.endpoints)
  }
  return { name: CUSTOM_POLICY_NAME, mode, allow, deny, endpoints }
}
