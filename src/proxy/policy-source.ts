// Where a proxy's policy comes from: a profile name (resolved with the
// proxy's own catalogue), an explicit network spec, or a fully resolved spec
// (what the runner sends, so that sidecars need no profile files). Used at
// start-up and by the admin API's PUT /policy.

import {
  compilePolicy,
  parsePolicySpecJson,
  PolicyError,
  SpecError,
  type OperatorSettings,
  type Policy,
  type PolicySpec,
} from '../policy/index.js'
import {
  networkPolicySpec,
  NetworkSpecError,
  policySpecOf,
  type ProfileCatalogue,
} from '../profiles/index.js'

export class PolicySourceError extends Error {}

export type PolicySource =
  { readonly profile: string } | { readonly network: unknown } | { readonly spec: unknown }

export function specFromSource(
  source: unknown,
  catalogue: ProfileCatalogue | undefined,
): PolicySpec {
  if (typeof source !== 'object' || source === null || Array.isArray(source)) {
    throw new PolicySourceError(
      'expected { "profile": NAME }, { "network": { allow, deny } } or { "spec": { name, mode, allow, deny } }',
    )
  }
  const keys = Object.keys(source)
  if (keys.length !== 1)
    throw new PolicySourceError(
      `give exactly one of profile, network or spec (got ${keys.join(', ') || 'nothing'})`,
    )
  const body = source as Record<string, unknown>
  try {
    if ('profile' in body) {
      if (!catalogue)
        throw new PolicySourceError(
          'this proxy has no profile catalogue; send a resolved spec instead',
        )
      const name = body.profile
      const profile = typeof name === 'string' ? catalogue.get(name) : undefined
      if (!profile)
        throw new PolicySourceError(
          `unknown profile ${JSON.stringify(name)}; known profiles: ${catalogue.names().join(', ')}`,
        )
      return policySpecOf(profile)
    }
    if ('network' in body) {
      if (!catalogue)
        throw new PolicySourceError(
          'this proxy has no profile catalogue; send a resolved spec instead',
        )
      return networkPolicySpec(body.network, catalogue)
    }
    if ('spec' in body) return parsePolicySpecJson(body.spec)
  } catch (err) {
    if (err instanceof SpecError || err instanceof NetworkSpecError)
      throw new PolicySourceError(err.message)
    throw err
  }
  throw new PolicySourceError(`unknown field "${keys[0]}"; give profile, network or spec`)
}

/** Compiles a spec with the operator's settings; every problem becomes a PolicySourceError. */
export function compileSource(spec: PolicySpec, operator: OperatorSettings): Policy {
  try {
    return compilePolicy(spec, operator)
  } catch (err) {
    if (err instanceof PolicyError) throw new PolicySourceError(err.message)
    throw err
  }
}
