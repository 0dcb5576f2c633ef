// Where a proxy's policy comes from: a profile name (resolved with the
// proxy's own catalogue), an explicit network spec, or a fully resolved spec
// (what the runner sends, so that sidecars need no profile files). Used at
// start-up, by the admin API's PUT /policy, and to keep a standalone proxy on
// its profile as the profile's file changes.

import {
  compilePolicy,
  parsePolicySpecJson,
  PolicyError,
  SpecError,
  type OperatorSettings,
  type Policy,
  type PolicySpec,
} from '../policy/index.js'
import type { ProfileCatalogue } from '../profiles/index.js'
import type { PolicyHolder } from './context.js'
import type { OperationalLog } from './decision-log.js'

export class PolicySourceError extends Error {}

/**
 * A catalogue, or what opens one when a request first needs it: the profiles
 * module (and its YAML parser) is loaded only by a proxy that resolves profiles.
 */
export type CatalogueSource =
  ProfileCatalogue | (() => ProfileCatalogue | Promise<ProfileCatalogue>)

/** Opens a lazily given catalogue once; later calls get the same one. */
export function catalogueOnce(
  source: CatalogueSource | undefined,
): (() => Promise<ProfileCatalogue>) | undefined {
  if (source === undefined) return undefined
  if (typeof source !== 'function') return () => Promise.resolve(source)
  let opened: Promise<ProfileCatalogue> | undefined
  return () => (opened ??= Promise.resolve().then(source))
}

export type PolicySource =
  { readonly profile: string } | { readonly network: unknown } | { readonly spec: unknown }

export async function specFromSource(
  source: unknown,
  openCatalogue: (() => Promise<ProfileCatalogue>) | undefined,
): Promise<PolicySpec> {
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
  if ('spec' in body) {
    try {
      return parsePolicySpecJson(body.spec)
    } catch (err) {
      if (err instanceof SpecError) throw new PolicySourceError(err.message)
      throw err
    }
  }
  if (!('profile' in body) && !('network' in body))
    throw new PolicySourceError(`unknown field "${keys[0]}"; give profile, network or spec`)
  if (!openCatalogue)
    throw new PolicySourceError('this proxy has no profile catalogue; send a resolved spec instead')
  const catalogue = await openCatalogue()
  const { networkPolicySpec, NetworkSpecError, policySpecOf } = await import('../profiles/index.js')
  try {
    if ('profile' in body) {
      const name = body.profile
      const profile = typeof name === 'string' ? catalogue.get(name) : undefined
      if (!profile)
        throw new PolicySourceError(
          `unknown profile ${JSON.stringify(name)}; known profiles: ${catalogue.names().join(', ')}`,
        )
      return policySpecOf(profile)
    }
    return networkPolicySpec(body.network, catalogue)
  } catch (err) {
    if (err instanceof SpecError || err instanceof NetworkSpecError)
      throw new PolicySourceError(err.message)
    throw err
  }
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

export interface FollowProfileOptions {
  readonly catalogue: ProfileCatalogue
  readonly name: string
  readonly operator: OperatorSettings
  readonly policy: PolicyHolder
  readonly log: OperationalLog
}

/**
 * Keeps a proxy on a profile of its catalogue: when the profile (or anything it
 * includes) changes, the new rules replace the policy for new connections; a
 * change that does not compile keeps the previous rules and is logged. The
 * caller starts the catalogue's watch and closes it.
 */
export async function followProfile(options: FollowProfileOptions): Promise<void> {
  const { catalogue, name, operator, policy, log } = options
  // Loaded here, not at the top: a sidecar that is sent resolved specs never needs it.
  const { policySpecOf } = await import('../profiles/index.js')
  catalogue.on('change', ({ changed }) => {
    const profile = catalogue.get(name)
    if (!changed.includes(name) || !profile) return
    try {
      policy.replace(compilePolicy(policySpecOf(profile), operator))
      log.info({ policy: name }, 'profile changed; new connections use the new rules')
    } catch (err) {
      log.warn(
        { policy: name, error: (err as Error).message },
        'profile change refused; keeping the previous rules',
      )
    }
  })
}
