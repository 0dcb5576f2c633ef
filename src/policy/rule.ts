// The rule grammar. A rule is a host pattern with an optional port part:
//
//   example.com          that name only, ports 80 and 443
//   *.example.com        any subdomain at any depth (not the apex), ports 80 and 443
//   *                    every host
//   10.1.2.3, 10.0.0.0/8, 2001:db8::1, 2001:db8::/32, [2001:db8::1]:8443
//   host:22, host:*, host:8000-8100
//   tcp:host:22          raw TCP: bytes the proxy does not read (SSH, SMTP,
//                        databases); needs a port part
//
// Rules are parsed once, when a profile loads, into the same canonical form
// that requests are turned into.

import { createRequire } from 'node:module'
import { CidrError, cidrOf, formatCidr, parseCidr, type Cidr } from './cidr.js'
import { HostError, canonicalHost } from './host.js'

/**
 * tldts, loaded when the first wildcard rule is parsed: its public-suffix list is
 * the largest part of the policy engine's memory, and many policies have no
 * wildcard. Loaded synchronously (its CommonJS build, the one an import gets too).
 */
let tldts: typeof import('tldts') | undefined
function publicSuffixes(): typeof import('tldts') {
  tldts ??= createRequire(import.meta.url)('tldts') as typeof import('tldts')
  return tldts
}

export type PortSpec =
  | { readonly kind: 'default' }
  | { readonly kind: 'any' }
  | { readonly kind: 'range'; readonly from: number; readonly to: number }

export type HostPattern =
  | { readonly kind: 'any' }
  | { readonly kind: 'exact'; readonly name: string }
  /** Matches every name that ends in `.${suffix}`; never `suffix` itself. */
  | { readonly kind: 'wildcard'; readonly suffix: string }
  | { readonly kind: 'cidr'; readonly cidr: Cidr }

export interface Rule {
  /** The rule as written in the profile. */
  readonly text: string
  /** The canonical spelling, used in decisions and logs. */
  readonly canonical: string
  readonly host: HostPattern
  readonly ports: PortSpec
  /**
   * A `tcp:` rule: the connection may carry bytes the proxy does not read
   * (neither TLS nor HTTP), and the server may speak first. Every other rule
   * carries only TLS (SNI checked) or HTTP the proxy reads and checks.
   */
  readonly raw: boolean
}

/** Ports a rule without a port part covers. */
export const DEFAULT_PORTS: readonly number[] = [80, 443]

export class RuleError extends Error {}

function fail(text: string, why: string): never {
  throw new RuleError(`bad rule "${text}": ${why}`)
}

export function parsePortSpec(text: string, portText: string): PortSpec {
  if (portText === '*') return { kind: 'any' }
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(portText)
  const from = m ? Number(m[1]) : NaN
  const to = m?.[2] !== undefined ? Number(m[2]) : from
  if (!m || from < 1 || to > 65535 || to < from) {
    fail(
      text,
      `port "${portText}" must be a number from 1 to 65535, a range like 8000-8100, or * for any port`,
    )
  }
  return { kind: 'range', from, to }
}

function formatPortSpec(spec: PortSpec): string {
  switch (spec.kind) {
    case 'default':
      return ''
    case 'any':
      return ':*'
    case 'range':
      return spec.from === spec.to ? `:${spec.from}` : `:${spec.from}-${spec.to}`
  }
}

/** Splits `host[:port]`, `[v6]:port` and bare IPv6 (which has no port part). */
function splitHostPort(text: string): { hostText: string; portText: string | undefined } {
  if (text.startsWith('[')) {
    const close = text.indexOf(']')
    if (close < 0) fail(text, 'unclosed "[" (write [2001:db8::1]:443)')
    const rest = text.slice(close + 1)
    if (rest !== '' && !rest.startsWith(':')) fail(text, `unexpected "${rest}" after "]"`)
    return { hostText: text.slice(1, close), portText: rest === '' ? undefined : rest.slice(1) }
  }
  const colons = text.split(':').length - 1
  if (colons > 1) return { hostText: text, portText: undefined } // bare IPv6 or IPv6 CIDR
  if (colons === 1) {
    const i = text.indexOf(':')
    return { hostText: text.slice(0, i), portText: text.slice(i + 1) }
  }
  return { hostText: text, portText: undefined }
}

function parseHostPattern(text: string, hostText: string): HostPattern {
  if (hostText === '') fail(text, 'empty host')
  if (hostText === '*') return { kind: 'any' }
  if (hostText.startsWith('*.')) {
    const base = hostText.slice(2)
    if (base.includes('*'))
      fail(text, 'only one wildcard, as the whole first label, is allowed (write *.example.com)')
    let host
    try {
      host = canonicalHost(base)
    } catch (err) {
      if (err instanceof HostError) fail(text, err.message)
      throw err
    }
    if (host.kind !== 'name')
      fail(text, 'a wildcard cannot apply to an IP address; write a CIDR block such as 10.0.0.0/8')
    // Private-section suffixes count too (github.io, s3.amazonaws.com, workers.dev): a
    // wildcard over one would match every tenant's site, an attacker's included.
    if (publicSuffixes().parse(host.name, { allowPrivateDomains: true }).domain === null) {
      fail(
        text,
        `"${host.name}" is a public suffix, so *.${host.name} would match every site under it; list the domains you need, e.g. *.example.${host.name}`,
      )
    }
    return { kind: 'wildcard', suffix: host.name }
  }
  if (hostText.includes('*')) {
    fail(
      text,
      'a wildcard must be the whole first label: write *.example.com (which matches any subdomain), not a partial label like api-*.example.com',
    )
  }
  if (hostText.includes('/')) {
    try {
      return { kind: 'cidr', cidr: parseCidr(hostText) }
    } catch (err) {
      if (err instanceof CidrError) fail(text, err.message)
      throw err
    }
  }
  let host
  try {
    host = canonicalHost(hostText)
  } catch (err) {
    if (err instanceof HostError) fail(text, err.message)
    throw err
  }
  if (host.kind === 'ip')
    return { kind: 'cidr', cidr: cidrOf(host.ip, host.ip.version === 4 ? 32 : 128) }
  return { kind: 'exact', name: host.name }
}

export function formatHostPattern(host: HostPattern): string {
  switch (host.kind) {
    case 'any':
      return '*'
    case 'exact':
      return host.name
    case 'wildcard':
      return `*.${host.suffix}`
    case 'cidr': {
      const full = host.cidr.prefix === (host.cidr.version === 4 ? 32 : 128)
      const text = formatCidr(host.cidr)
      return full ? text.slice(0, text.lastIndexOf('/')) : text
    }
  }
}

function formatRule(host: HostPattern, ports: PortSpec): string {
  const hostText = formatHostPattern(host)
  const portText = formatPortSpec(ports)
  if (portText !== '' && host.kind === 'cidr' && host.cidr.version === 6)
    return `[${hostText}]${portText}`
  return hostText + portText
}

/** The prefix that marks a raw TCP rule. */
export const RAW_PREFIX = 'tcp:'

/** Parses one rule. Throws RuleError with a message that says what to write instead. */
export function parseRule(input: string): Rule {
  const text = input.trim()
  if (text === '')
    fail(
      input,
      'empty pattern (write a host such as example.com, *.example.com, an IP or CIDR, or *)',
    )
  if (/^tcp:\/\//i.test(text)) {
    const hostPart = text.replace(/^tcp:\/\//i, '').split('/')[0]
    fail(text, `raw TCP rules are written without "//": tcp:${hostPart}`)
  }
  const raw = text.slice(0, RAW_PREFIX.length).toLowerCase() === RAW_PREFIX
  const rule = parseHostRule(text, raw ? text.slice(RAW_PREFIX.length) : text)
  if (!raw) return { ...rule, raw }
  if (rule.ports.kind === 'default') {
    fail(
      text,
      'a tcp: rule names its port, so that raw TCP is opened only where meant: write e.g. tcp:github.com:22',
    )
  }
  return { ...rule, canonical: RAW_PREFIX + rule.canonical, raw }
}

/**
 * Parses a rule of an allow or deny list. A deny rule refuses every protocol,
 * so `tcp:` on it would only suggest it refused raw TCP alone: refused.
 */
export function parseListRule(list: 'allow' | 'deny', input: string): Rule {
  const rule = parseRule(input)
  if (list === 'deny' && rule.raw) {
    fail(
      rule.text,
      `a deny rule refuses all traffic to its host and port, so "tcp:" does not apply; write "${rule.canonical.slice(RAW_PREFIX.length)}"`,
    )
  }
  return rule
}

/** The host and port part of a rule (`text` is the whole rule, for messages). */
function parseHostRule(text: string, body: string): Omit<Rule, 'raw'> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(body)) {
    const hostPart = body.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/')[0]
    fail(text, `rules name hosts, not URLs; write "${hostPart}"`)
  }
  if (/[\s/]/.test(body) && !/^[^\s]+\/[0-9]{1,3}(?:\]?(?::[^/]*)?)?$/.test(body)) {
    fail(
      text,
      'rules name hosts; a path or whitespace is not allowed here (paths belong in endpoints:)',
    )
  }
  if (body === '') fail(text, 'no host after "tcp:" (write e.g. tcp:github.com:22)')
  const { hostText, portText } = splitHostPort(body)
  const host = parseHostPattern(text, hostText)
  const ports: PortSpec =
    portText === undefined ? { kind: 'default' } : parsePortSpec(text, portText)
  return { text, canonical: formatRule(host, ports), host, ports }
}
