// Learns a profile from what a sandbox used (`isorun profiles learn`, the
// runner's suggested-profile route): the minimal allow-list profile that lets
// the same run pass. Pure: observations in, commented YAML out.
//
//   - exact names; a port only where it is not 80/443; `tcp:host:port` for raw TCP;
//   - `*.domain` only where at least WILDCARD_MIN distinct subdomains of one
//     registrable domain were used (never over a public suffix);
//   - a built-in building block (a profile without includes, deny or endpoint
//     rules) is included instead of its hosts when the run used its main host
//     (the first in its file) or at least two of its hosts, so one API host of
//     a large profile does not pull the whole profile in;
//   - with a base profile, the base is included and only what it lacks is added,
//     and the diff says which base rules the run did not need.
//
// The result is checked before it is returned: it parses as a profile, and
// decide() allows every destination that was used.

import { getDomain } from 'tldts'
import {
  compilePolicy,
  decide,
  parseHost,
  parseRule,
  RuleError,
  type CanonicalHost,
  type Policy,
  type PolicySpec,
} from '../policy/index.js'
import { parseProfile, PROFILE_NAME } from './parse-profile.js'
import type { ResolvedProfile } from './resolve.js'

/** One destination a sandbox used: what the proxy's hosts-seen list holds. */
export interface Observation {
  readonly host: string
  /** 0 for a DNS question (the name is then needed on 80/443). */
  readonly port: number
  /** Raw TCP, learned as a `tcp:` rule. */
  readonly raw: boolean
  readonly count: number
  readonly firstSeen: string
}

/** The profiles a learned profile may include, looked up by name. */
export interface ProfileSource {
  get(name: string): ResolvedProfile | undefined
  names(): string[]
}

export interface LearnOptions {
  /** The profile's name (also its file name). */
  readonly name: string
  readonly catalogue: ProfileSource
  /** A profile to build on: included, and compared against. */
  readonly base?: string
  /** For the header comment. */
  readonly sandbox?: string
  readonly now?: Date
}

export interface LearnedRule {
  readonly rule: string
  /** Destinations it covers (`host` or `host:port`). */
  readonly hosts: string[]
  readonly count: number
  readonly firstSeen: string
}

export interface LearnedProfile {
  readonly name: string
  readonly yaml: string
  readonly include: string[]
  readonly allow: LearnedRule[]
  readonly diff?: { readonly base: string; readonly added: string[]; readonly unused: string[] }
}

export class LearnError extends Error {}

/** A wildcard needs this many distinct subdomains of one registrable domain. */
export const WILDCARD_MIN = 3

/** What the run needed, one per rule-shaped destination. */
interface Need {
  readonly host: CanonicalHost
  readonly text: string
  /** 0: the default ports (80 and 443, or a DNS question). */
  readonly port: number
  readonly raw: boolean
  count: number
  firstSeen: string
}

function needsOf(observations: readonly Observation[]): Need[] {
  const needs = new Map<string, Need>()
  for (const o of observations) {
    const host = parseHost(o.host)
    if (host.kind === 'invalid') continue
    const text = host.kind === 'name' ? host.name : host.text
    const port = o.raw ? o.port : o.port === 80 || o.port === 443 ? 0 : o.port
    if (o.raw && port === 0) continue
    const key = `${o.raw ? 'tcp:' : ''}${text}|${port}`
    const need = needs.get(key)
    if (need) {
      need.count += o.count
      if (o.firstSeen < need.firstSeen) need.firstSeen = o.firstSeen
    } else {
      needs.set(key, { host, text, port, raw: o.raw, count: o.count, firstSeen: o.firstSeen })
    }
  }
  return [...needs.values()].sort((a, b) => a.firstSeen.localeCompare(b.firstSeen))
}

/** Whether a policy's rules allow a need (deny rules first). */
function covers(policy: Policy, need: Need): boolean {
  const ports = need.port === 0 ? [443, 80] : [need.port]
  return ports.some(
    (port) =>
      !policy.deny.match(need.host, port) &&
      (need.raw ? policy.raw.match(need.host, port) : policy.allow.match(need.host, port)) !==
        undefined,
  )
}

function rulesPolicy(profile: ResolvedProfile): Policy {
  return compilePolicy({
    name: profile.name,
    mode: 'allow-list',
    allow: profile.allow,
    deny: profile.deny,
  })
}

function hostPort(need: Need): string {
  const host = need.host.kind === 'ip' && need.text.includes(':') ? `[${need.text}]` : need.text
  return need.port === 0 ? need.text : `${host}:${need.port}`
}

/** Building blocks: profiles of plain allow rules, safe to merge whole; never a catch-all. */
function isBuildingBlock(profile: ResolvedProfile): boolean {
  return (
    profile.mode === 'allow-list' &&
    profile.includes.length === 0 &&
    profile.deny.length === 0 &&
    profile.endpoints.length === 0 &&
    profile.allow.length > 0 &&
    !profile.allow.some((r) => parseRule(r.rule).host.kind === 'any')
  )
}

/** Includes for what the base lacks: building blocks whose main host, or two of whose hosts, were used. */
function chooseIncludes(
  needs: Need[],
  catalogue: ProfileSource,
  exclude: ReadonlySet<string>,
): { include: { name: string; covered: Need[] }[]; rest: Need[] } {
  const candidates = catalogue
    .names()
    .filter((name) => !exclude.has(name))
    .map((name) => catalogue.get(name))
    .filter((p): p is ResolvedProfile => p !== undefined && isBuildingBlock(p))
    .map((profile) => {
      const policy = rulesPolicy(profile)
      const main = parseRule(profile.allow[0]?.rule ?? '')
      const covered = needs.filter((n) => covers(policy, n))
      const usesMain = covered.some(
        (n) =>
          main.host.kind === 'exact' && n.host.kind === 'name' && n.host.name === main.host.name,
      )
      return { name: profile.name, size: profile.allow.length, covered, usesMain }
    })
    .filter((c) => c.usesMain || c.covered.length >= 2)
    // The profile covering the most, then the smallest, first.
    .sort((a, b) => b.covered.length - a.covered.length || a.size - b.size)
  const include: { name: string; covered: Need[] }[] = []
  let rest = needs
  for (const c of candidates) {
    const covered = c.covered.filter((n) => rest.includes(n))
    if (covered.length === 0) continue
    include.push({ name: c.name, covered })
    rest = rest.filter((n) => !covered.includes(n))
  }
  return { include, rest }
}

/** Rules for what no include covers: exact names, wildcards for >= WILDCARD_MIN subdomains. */
function rulesFor(needs: Need[]): LearnedRule[] {
  const rules: LearnedRule[] = []
  const add = (rule: string, covered: Need[]): void => {
    rules.push({
      rule,
      hosts: covered.map(hostPort),
      count: covered.reduce((sum, n) => sum + n.count, 0),
      firstSeen: covered.map((n) => n.firstSeen).sort()[0] as string,
    })
  }
  const byDomain = new Map<string, Need[]>()
  for (const need of needs) {
    if (need.raw || need.port !== 0 || need.host.kind !== 'name') continue
    const domain = getDomain(need.host.name, { allowPrivateDomains: true })
    if (!domain || domain === need.host.name) continue
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), need])
  }
  const wildcarded = new Set<Need>()
  for (const [domain, subs] of byDomain) {
    if (new Set(subs.map((n) => n.text)).size < WILDCARD_MIN) continue
    try {
      parseRule(`*.${domain}`) // refuses a wildcard over a public suffix
    } catch (err) {
      if (err instanceof RuleError) continue
      throw err
    }
    add(`*.${domain}`, subs)
    for (const n of subs) wildcarded.add(n)
  }
  for (const need of needs) {
    if (wildcarded.has(need)) continue
    add(need.raw ? `tcp:${hostPort(need)}` : hostPort(need), [need])
  }
  return rules.sort((a, b) => a.firstSeen.localeCompare(b.firstSeen))
}

function describeUse(rule: { hosts: string[]; count: number; firstSeen: string }): string {
  const times = `${rule.count} ${rule.count === 1 ? 'time' : 'times'}`
  const hosts = rule.hosts.length > 1 ? `: ${rule.hosts.join(', ')}` : ''
  return `used ${times}, first ${rule.firstSeen}${hosts}`
}

/** A YAML plain scalar when safe, else double-quoted. */
function scalar(text: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9.:_/[\]-]*$/.test(text) ? text : JSON.stringify(text)
}

export function learnProfile(
  observations: readonly Observation[],
  options: LearnOptions,
): LearnedProfile {
  const { name, catalogue } = options
  if (!PROFILE_NAME.test(name))
    throw new LearnError(
      `"${name}" is not a profile name: lowercase letters, digits and hyphens, up to 63 characters`,
    )
  const base = options.base === undefined ? undefined : catalogue.get(options.base)
  if (options.base !== undefined && !base)
    throw new LearnError(
      `unknown base profile "${options.base}"; known profiles: ${catalogue.names().join(', ')}`,
    )
  if (base && base.name === name)
    throw new LearnError(`the learned profile cannot have its base's name "${name}"`)

  const needs = needsOf(observations)
  const basePolicy = base ? rulesPolicy(base) : undefined
  const missing = basePolicy ? needs.filter((n) => !covers(basePolicy, n)) : needs
  const exclude = new Set([name, ...(base ? [base.name, ...base.includes] : [])])
  const { include, rest } = chooseIncludes(missing, catalogue, exclude)
  const allow = rulesFor(rest)
  const includeNames = [...(base ? [base.name] : []), ...include.map((i) => i.name)]

  const date = (options.now ?? new Date()).toISOString()
  const lines = [
    `# Learned by isorun${options.sandbox ? ` from sandbox ${options.sandbox}` : ''} on ${date}:`,
    `# the ${needs.length} destination${needs.length === 1 ? '' : 's'} the run used${base ? `, on top of profile ${base.name}` : ''}.`,
    '# Review it before use: every rule below is something the sandbox reached or tried to.',
    `name: ${name}`,
    `description: ${scalar(`Learned${options.sandbox ? ` from sandbox ${options.sandbox}` : ''}${base ? ` on top of ${base.name}` : ''}`)}`,
    'mode: allow-list',
  ]
  if (includeNames.length > 0) {
    lines.push('include:')
    if (base) lines.push(`  - ${base.name} # the base profile`)
    for (const i of include)
      lines.push(
        `  - ${i.name} # covers ${i.covered.map(hostPort).join(', ')} (${describeUse({ hosts: [], count: i.covered.reduce((s, n) => s + n.count, 0), firstSeen: i.covered.map((n) => n.firstSeen).sort()[0] as string })})`,
      )
  }
  if (allow.length > 0) {
    lines.push('allow:')
    for (const rule of allow) lines.push(`  - ${scalar(rule.rule)} # ${describeUse(rule)}`)
  } else if (includeNames.length === 0) {
    lines.push('allow: [] # the run used no destination')
  }
  const unused = basePolicy ? unusedRules(base as ResolvedProfile, basePolicy, needs) : []
  if (base && unused.length > 0) {
    lines.push(
      `# Rules of ${base.name} the run did not use (kept, since ${base.name} is included):`,
      ...unused.map((r) => `#   ${r}`),
    )
  }
  const yaml = `${lines.join('\n')}\n`
  verify(yaml, name, needs, includeNames, catalogue)
  return {
    name,
    yaml,
    include: includeNames,
    allow,
    ...(base
      ? {
          diff: {
            base: base.name,
            added: [...include.map((i) => `include ${i.name}`), ...allow.map((r) => r.rule)],
            unused,
          },
        }
      : {}),
  }
}

/** Base allow rules that no used destination matched. */
function unusedRules(base: ResolvedProfile, basePolicy: Policy, needs: Need[]): string[] {
  const used = new Set<string>()
  for (const need of needs) {
    const ports = need.port === 0 ? [443, 80] : [need.port]
    for (const port of ports) {
      const hit = need.raw
        ? basePolicy.raw.match(need.host, port)
        : basePolicy.allow.match(need.host, port)
      if (hit) used.add(hit.canonical)
    }
  }
  return base.allow.map((r) => parseRule(r.rule).canonical).filter((r) => !used.has(r))
}

/** The learned YAML must parse, and its policy must allow everything that was used. */
function verify(
  yaml: string,
  name: string,
  needs: readonly Need[],
  includes: readonly string[],
  catalogue: ProfileSource,
): void {
  const def = parseProfile(yaml, `${name}.yaml`)
  const spec: PolicySpec = {
    name,
    mode: 'allow-list',
    allow: [
      ...def.allow.map((rule) => ({ rule, from: name })),
      ...includes.flatMap((n) => catalogue.get(n)?.allow ?? []),
    ],
    deny: includes.flatMap((n) => catalogue.get(n)?.deny ?? []),
  }
  const policy = compilePolicy(spec)
  for (const need of needs) {
    const request =
      need.port === 0
        ? ({ protocol: 'dns', host: need.text, port: 0, queryType: 'A' } as const)
        : ({
            protocol: 'connect',
            host: need.text,
            port: need.port,
            ...(need.raw ? { payload: 'server-first' as const } : {}),
          } as const)
    const decision = decide(request, policy)
    // Special-purpose addresses are the operator's to open (--allow-private), not a profile's.
    if (decision.action !== 'allow' && decision.reason !== 'special-address')
      throw new LearnError(
        `internal error: the learned profile does not allow ${hostPort(need)} (${decision.reason}); please report this`,
      )
  }
}
