// The policy engine: pure code, no I/O. Everything that allows or refuses
// traffic goes through decide().
export { decide } from './decide.js'
export type {
  AllowReason,
  Decision,
  DenyReason,
  EgressRequest,
  Protocol,
  Reason,
  TlsObservation,
  TunnelPayload,
} from './decide.js'
export { adviseDecision, describeDecision } from './explain.js'
export { compilePolicy, isMode, MODES, parseSpecialAllowances, PolicyError } from './policy.js'
export type {
  Mode,
  OperatorRange,
  OperatorSettings,
  Policy,
  PolicySpec,
  RuleSource,
} from './policy.js'
export { canonicalHost, hostText, HostError, parseHost, tryCanonicalHost } from './host.js'
export type { CanonicalHost } from './host.js'
export { formatIP, ipv6, parseIP, parseIPv4, parseIPv6, unwrapIP } from './ip.js'
export type { IP } from './ip.js'
export { parseListRule, parseRule, RuleError, DEFAULT_PORTS, RAW_PREFIX } from './rule.js'
export type { Rule, PortSpec, HostPattern } from './rule.js'
export { RuleIndex } from './matcher.js'
export type { SourcedRule } from './matcher.js'
export { classifyIP, SPECIAL_RANGES, SPECIAL_GROUPS } from './special.js'
export type { SpecialRange } from './special.js'
export {
  EndpointError,
  parseEndpointHost,
  parseEndpointRule,
  describeEndpointRule,
  overrideHeadersIn,
  withoutFragment,
} from './endpoint.js'
export type { EndpointRule, EndpointSet, EndpointAction } from './endpoint.js'
export { parsePolicySpecJson, SpecError } from './spec-json.js'
export { joinAuthority, splitAuthority } from './authority.js'
export type { Authority } from './authority.js'
export { describeInterception, interceptionFor } from './interception.js'
export type { BoundHosts, Interception, InterceptionReason } from './interception.js'
