// Which allowed TLS connections the proxy intercepts (terminates with a leaf
// from the sandbox's CA, then decides and logs every request inside): only
// hosts where it must read the requests. Everything else is spliced as it is,
// so a sandbox's traffic is decrypted only where a rule or a secret needs it.
//
//   endpoint-rules  the host has per-method/path rules
//   bound-secret    a secret is bound to the host (its placeholder is replaced in requests)
//   inspect         the allow rule that allowed the host comes from a profile (or a
//                   network spec) marked `inspect: true`

import type { Decision } from './decide.js'
import type { EndpointSet } from './endpoint.js'
import type { Policy } from './policy.js'

export type InterceptionReason = 'endpoint-rules' | 'bound-secret' | 'inspect'

export interface Interception {
  readonly intercept: boolean
  /** Why, in the order above; empty when the connection is spliced. */
  readonly reasons: readonly InterceptionReason[]
  /** The endpoint rules that decide each request, when the host has any. */
  readonly endpoints: EndpointSet | undefined
}

/** Hosts some secret is bound to, by canonical name (the proxy's secret store answers). */
export interface BoundHosts {
  hasSecretFor(host: string): boolean
}

const SPLICED: Interception = { intercept: false, reasons: [], endpoints: undefined }

/**
 * Whether to intercept a TLS connection the policy allowed. `decision` is the
 * host-level decision for it (from decide(), with its canonical host and the
 * profile its allow rule came from). A refused connection is never intercepted.
 */
export function interceptionFor(
  policy: Policy,
  decision: Decision,
  bound?: BoundHosts,
): Interception {
  if (decision.action !== 'allow') return SPLICED
  const host = decision.host
  const reasons: InterceptionReason[] = []
  const endpoints = policy.endpoints.size > 0 ? policy.endpoints.lookup(host) : undefined
  if (endpoints) reasons.push('endpoint-rules')
  if (bound?.hasSecretFor(host)) reasons.push('bound-secret')
  // Allowed by the mode (no rule): the policy's own setting counts.
  const from = decision.from ?? policy.name
  if (policy.inspect.size > 0 && policy.inspect.has(from)) reasons.push('inspect')
  return reasons.length === 0 ? SPLICED : { intercept: true, reasons, endpoints }
}

const WHY: Record<InterceptionReason, string> = {
  'endpoint-rules': 'the host has endpoint rules',
  'bound-secret': 'a secret is bound to the host',
  inspect: 'its profile is marked inspect: true',
}

export function describeInterception(i: Interception): string {
  return i.intercept
    ? `yes: ${i.reasons.map((r) => WHY[r]).join('; ')}`
    : 'no: spliced without decryption'
}
