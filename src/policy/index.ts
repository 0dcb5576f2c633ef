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
  WouldDeny,
} from './decide.js'
export { adviseDecision, describeDecision } from './explain.js'
export {
  approvalProblem,
  compilePolicy,
  DEFAULT_APPROVAL_TIMEOUT_MS,
  isMode,
  MAX_APPROVAL_TIMEOUT_MS,
  MODES,
  ON_UNKNOWN,
  parseSpecialAllowances,
  PolicyError,
} from './policy.js'
export {
  formatBytes,
  formatDuration,
  LimitError,
  LimitIndex,
  LIMIT_FIELDS,
  limitFromJson,
  parseDuration,
  parseLimitFields,
  parseSize,
} from './limits.js'
export type { Limit, LimitSource } from './limits.js'
export type {
  Mode,
  OnUnknown,
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
