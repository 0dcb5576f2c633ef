// Validation of a policy spec received as JSON (the runner sends resolved
// profiles to its proxies this way). Pure: shape checks only; the rules
// themselves are checked when the spec is compiled.

import { LimitError, limitFromJson, type LimitSource } from './limits.js'
import { approvalProblem, isMode, MODES, type PolicySpec, type RuleSource } from './policy.js'
import {
  EndpointError,
  parseEndpointHost,
  parseEndpointRule,
  type EndpointRule,
  type EndpointSet,
} from './endpoint.js'

export class SpecError extends Error {}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function ruleSources(value: unknown, field: string): RuleSource[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new SpecError(`${field} must be a list`)
  return value.map((item, i) => {
    if (typeof item === 'string') return { rule: item, from: 'custom' }
    if (
      isObject(item) &&
      typeof item.rule === 'string' &&
      (item.from === undefined || typeof item.from === 'string')
    ) {
      return { rule: item.rule, from: (item.from as string | undefined) ?? 'custom' }
    }
    throw new SpecError(`${field}[${i}] must be a rule string or { rule, from }`)
  })
}

function endpointSets(value: unknown): EndpointSet[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new SpecError('endpoints must be a list')
  return value.map((set, i) => {
    if (!isObject(set) || typeof set.host !== 'string' || !Array.isArray(set.rules)) {
      throw new SpecError(`endpoints[${i}] must be { host, rules, from }`)
    }
    try {
      const rules: EndpointRule[] = set.rules.map((r: unknown, j: number) => {
        if (
          !isObject(r) ||
          (r.action !== 'allow' && r.action !== 'deny') ||
          (r.path !== undefined && typeof r.path !== 'string')
        ) {
          throw new SpecError(`endpoints[${i}].rules[${j}] must be { methods, path, action }`)
        }
        const methods = Array.isArray(r.methods) ? r.methods.map(String) : []
        return parseEndpointRule({
          methods,
          ...(typeof r.path === 'string' ? { path: r.path } : {}),
          action: r.action,
        })
      })
      return {
        host: parseEndpointHost(set.host),
        rules,
        from: typeof set.from === 'string' ? set.from : 'custom',
      }
    } catch (err) {
      if (err instanceof EndpointError) throw new SpecError(`endpoints[${i}]: ${err.message}`)
      throw err
    }
  })
}

function profileNames(value: unknown): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw new SpecError('inspect must be a list of profile names')
  return value as string[]
}

export function parsePolicySpecJson(value: unknown): PolicySpec {
  if (!isObject(value))
    throw new SpecError('a policy spec is an object with name, mode, allow, deny and endpoints')
  const name = value.name ?? 'custom'
  if (typeof name !== 'string' || name === '')
    throw new SpecError('name must be a non-empty string')
  if (!isMode(value.mode)) throw new SpecError(`mode must be one of ${MODES.join(', ')}`)
  const approval = approvalProblem(value.mode, value.onUnknown, value.approvalTimeoutMs)
  if (approval) throw new SpecError(approval)
  return {
    name,
    mode: value.mode,
    allow: ruleSources(value.allow, 'allow'),
    deny: ruleSources(value.deny, 'deny'),
    endpoints: endpointSets(value.endpoints),
    inspect: profileNames(value.inspect),
    ...(value.onUnknown !== undefined ? { onUnknown: value.onUnknown as 'deny' | 'ask' } : {}),
    ...(value.approvalTimeoutMs !== undefined
      ? { approvalTimeoutMs: value.approvalTimeoutMs as number }
      : {}),
    ...(value.limits !== undefined ? { limits: limitSources(value.limits) } : {}),
  }
}

function limitSources(value: unknown): LimitSource[] {
  if (!Array.isArray(value)) throw new SpecError('limits must be a list')
  try {
    return value.map((item, i) => limitFromJson(item, i))
  } catch (err) {
    if (err instanceof LimitError) throw new SpecError(err.message)
    throw err
  }
}
