// Profiles: loading, validating, composing and watching profile YAML files.
export { builtinProfilesDir, ProfileCatalogue } from './catalogue.js'
export type {
  CatalogueChange,
  CatalogueOptions,
  ProfileProblem,
  ProfileSummary,
} from './catalogue.js'
export { parseProfile, ProfileError, PROFILE_NAME, readYaml } from './parse-profile.js'
export type { ProfileDefinition } from './parse-profile.js'
export { policySpecOf, resolveProfile } from './resolve.js'
export type { ResolvedProfile } from './resolve.js'
export { CUSTOM_POLICY_NAME, networkPolicySpec, NetworkSpecError } from './network-spec.js'
export type { NetworkSpec } from './network-spec.js'
