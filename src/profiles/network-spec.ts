// An explicit network policy, given instead of a profile name when a sandbox is
// created: `{ allow, deny }`, optionally with a mode, profiles to include,
// endpoint rules and `inspect`. It is validated here with the same parsers as
// profile files.

import {
  approvalProblem,
  EndpointError,
  isMode,
  LimitError,
  parseLimitFields,
  type LimitSource,
  type OnUnknown,
  MODES,
  parseEndpointHost,
  parseEndpointRule,
  parseListRule,
  RuleError,
  type EndpointSet,
  type Mode,
  type PolicySpec,
  type RuleSource,
} from '../policy/index.js'
import type { ProfileCatalogue } from './catalogue.js'
import { POLICY_FIELDS } from './parse-profile.js'

export interface NetworkSpec {
  /** Default `allow-list`: only what `allow` (and the includes) name is reachable. */
  readonly mode?: Mode
  readonly include?: readonly string[]
  readonly allow?: readonly string[]
  readonly deny?: readonly string[]
  /** Per-host method/path rules, as in a profile: `{ "api.github.com": [{ methods, path, action }] }`. */
  readonly endpoints?: Readonly<Record<string, readonly unknown[]>>
  /** Intercept TLS to the hosts `allow` allows (decrypted, decided and logged per request). */
  readonly inspect?: boolean
  readonly onUnknown?: OnUnknown
  readonly approvalTimeoutMs?: number
  /** `{ PATTERN: { upload, download, requests, window } }`. */
  readonly limits?: Readonly<Record<string, unknown>>
}

const FIELDS: readonly string[] = POLICY_FIELDS

function limitSources(value: unknown): LimitSource[] {
  if (value === undefined) return []
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new NetworkSpecError(
      'network.limits must be an object of pattern: { upload, download, requests, window }, e.g. { "api.example.com": { "upload": "10MB", "window": "1h" } }',
    )
  return Object.entries(value as Record<string, unknown>).map(([pattern, fields]) => {
    const field = `network.limits[${JSON.stringify(pattern)}]`
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields))
      throw new NetworkSpecError(`${field} must be an object such as { "upload": "10MB" }`)
    try {
      return parseLimitFields(pattern, fields as Record<string, unknown>, CUSTOM_POLICY_NAME)
    } catch (err) {
      if (err instanceof LimitError) throw new NetworkSpecError(`${field}: ${err.message}`)
      throw err
    }
  })
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

function endpointSets(value: unknown): EndpointSet[] {
  if (value === undefined) return []
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new NetworkSpecError(
      'network.endpoints must be an object of host: [rules], e.g. { "api.github.com": [{ "methods": ["GET"], "path": "/repos/**", "action": "allow" }] }',
    )
  return Object.entries(value as Record<string, unknown>).map(([hostText, rules]) => {
    const field = `network.endpoints[${JSON.stringify(hostText)}]`
    try {
      const host = parseEndpointHost(hostText)
      if (!Array.isArray(rules) || rules.length === 0)
        throw new NetworkSpecError(`${field} must be a non-empty list of rules`)
      return {
        host,
        from: CUSTOM_POLICY_NAME,
        rules: rules.map((rule: unknown, i) => {
          const r = (typeof rule === 'object' && rule !== null ? rule : {}) as Record<
            string,
            unknown
          >
          const extra = Object.keys(r).find((k) => !['methods', 'path', 'action'].includes(k))
          if (extra !== undefined)
            throw new NetworkSpecError(
              `${field}[${i}].${extra} is not a field; use methods, path and action`,
            )
          if (r.action !== 'allow' && r.action !== 'deny')
            throw new NetworkSpecError(`${field}[${i}].action must be allow or deny`)
          if (
            r.methods !== undefined &&
            !(Array.isArray(r.methods) && r.methods.every((m) => typeof m === 'string'))
          )
            throw new NetworkSpecError(`${field}[${i}].methods must be a list such as ["GET"]`)
          if (r.path !== undefined && typeof r.path !== 'string')
            throw new NetworkSpecError(`${field}[${i}].path must be a string such as "/repos/**"`)
          try {
            return parseEndpointRule({
              action: r.action,
              ...(r.methods ? { methods: r.methods as string[] } : {}),
              ...(r.path !== undefined ? { path: r.path } : {}),
            })
          } catch (err) {
            if (err instanceof EndpointError)
              throw new NetworkSpecError(`${field}[${i}]: ${err.message}`)
            throw err
          }
        }),
      }
    } catch (err) {
      if (err instanceof EndpointError) throw new NetworkSpecError(`${field}: ${err.message}`)
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
    if (!FIELDS.includes(key)) {
      throw new NetworkSpecError(`network.${key} is not a field; use ${FIELDS.join(', ')}`)
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
  if (spec.inspect !== undefined && typeof spec.inspect !== 'boolean')
    throw new NetworkSpecError('network.inspect must be true or false')
  const endpoints = endpointSets(spec.endpoints)
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
  const inspect = [
    ...(spec.inspect === true ? [CUSTOM_POLICY_NAME] : []),
    ...include.flatMap((name) => catalogue.get(name as string)?.inspect ?? []),
  ]
  const approval = approvalProblem(mode, spec.onUnknown, spec.approvalTimeoutMs)
  if (approval) throw new NetworkSpecError(`network.${approval}`)
  const limits = limitSources(spec.limits)
  const seen = new Set(limits.map((l) => l.pattern))
  for (const name of include)
    for (const limit of catalogue.get(name as string)?.limits ?? [])
      if (!seen.has(limit.pattern)) {
        seen.add(limit.pattern)
        limits.push(limit)
      }
  return {
    name: CUSTOM_POLICY_NAME,
    mode,
    allow,
    deny,
    endpoints,
    inspect,
    ...(spec.onUnknown !== undefined ? { onUnknown: spec.onUnknown as OnUnknown } : {}),
    ...(spec.approvalTimeoutMs !== undefined
      ? { approvalTimeoutMs: spec.approvalTimeoutMs as number }
      : {}),
    ...(limits.length > 0 ? { limits } : {}),
  }
}
