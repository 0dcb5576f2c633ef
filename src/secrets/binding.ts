// A secret as the proxy holds it: the placeholder the sandbox sees, the value
// that replaces it, the hosts it is bound to and the form it travels in. The
// runner sends these through the admin API; `isorun proxy --secrets` reads them
// from a file. Shape checks here; values are checked, never shown.

import { randomBytes } from 'node:crypto'
import { parseRule, RuleError } from '../policy/index.js'

/**
 * How a secret travels, and so where its placeholder is replaced:
 *   raw     the header's whole value is the placeholder        (x-api-key: <placeholder>)
 *   bearer  `Authorization: Bearer <placeholder>`
 *   basic   `Authorization: Basic base64(user:<placeholder>)` (or the placeholder as the user)
 */
export type SecretScheme = 'raw' | 'bearer' | 'basic'
export const SCHEMES: readonly SecretScheme[] = ['raw', 'bearer', 'basic']

export interface SecretForm {
  /** Lowercase header name. */
  readonly header: string
  readonly scheme: SecretScheme
}

export interface SecretBinding extends SecretForm {
  readonly name: string
  readonly placeholder: string
  readonly value: string
  /** Host rules (`api.example.com`, `*.example.com`), canonical. */
  readonly hosts: readonly string[]
}

/** What may be shown of a binding: everything but the value. */
export type PublicSecretBinding = Omit<SecretBinding, 'value'>

export class SecretError extends Error {}

export const SECRET_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
/** Placeholders are single tokens, so they survive every header form unchanged. */
const PLACEHOLDER = /^[A-Za-z0-9._~-]{16,200}$/
/** Headers a secret may never be sent in: they are the proxy's or the connection's own. */
const RESERVED_HEADERS = [
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'proxy-authorization',
]

/** A header form, checked: bearer and basic go in Authorization only. */
export function parseForm(header: unknown, scheme: unknown, where: string): SecretForm {
  if (typeof header !== 'string' || !HEADER_NAME.test(header.toLowerCase()))
    throw new SecretError(
      `${where}: header must be a header name such as x-api-key or authorization`,
    )
  const name = header.toLowerCase()
  if (RESERVED_HEADERS.includes(name))
    throw new SecretError(`${where}: a secret cannot be sent in ${name}`)
  const s = scheme ?? 'raw'
  if (typeof s !== 'string' || !(SCHEMES as readonly string[]).includes(s))
    throw new SecretError(`${where}: scheme must be one of ${SCHEMES.join(', ')}`)
  if (s !== 'raw' && name !== 'authorization')
    throw new SecretError(
      `${where}: scheme ${s} is sent in the authorization header; write header: authorization`,
    )
  return { header: name, scheme: s as SecretScheme }
}

/** Host rules a secret is bound to: names or `*.name` wildcards, no IPs, ports or `*`. */
export function parseSecretHosts(hosts: unknown, where: string): string[] {
  if (!Array.isArray(hosts) || hosts.length === 0)
    throw new SecretError(`${where}: hosts must be a non-empty list such as [api.example.com]`)
  return hosts.map((text: unknown, i) => {
    if (typeof text !== 'string') throw new SecretError(`${where}: hosts[${i}] must be a string`)
    let rule
    try {
      rule = parseRule(text)
    } catch (err) {
      if (err instanceof RuleError) throw new SecretError(`${where}: hosts[${i}]: ${err.message}`)
      throw err
    }
    if (rule.host.kind !== 'exact' && rule.host.kind !== 'wildcard')
      throw new SecretError(
        `${where}: hosts[${i}] "${text}" must be a host name or *.domain: a secret goes only to the hosts it is for`,
      )
    if (rule.ports.kind !== 'default')
      throw new SecretError(`${where}: hosts[${i}] "${text}": write the host without a port`)
    return rule.canonical
  })
}

/** A value that can travel in a header: no control characters (they would split the header). */
export function checkSecretValue(value: unknown, where: string): string {
  if (typeof value !== 'string' || value === '')
    throw new SecretError(`${where}: the value is empty`)
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value))
    throw new SecretError(
      `${where}: the value contains a line break or another control character (a trailing newline in a file is removed; others are refused)`,
    )
  return value
}

export function checkPlaceholder(placeholder: unknown, where: string): string {
  if (typeof placeholder !== 'string' || !PLACEHOLDER.test(placeholder))
    throw new SecretError(`${where}: placeholder must be 16 to 200 letters, digits or . _ ~ -`)
  return placeholder
}

/** The admin API's JSON: `[{ name, placeholder, value, hosts, header, scheme }]`. */
export function parseSecretBindings(json: unknown): SecretBinding[] {
  if (!Array.isArray(json)) throw new SecretError('secrets must be a list')
  const seen = new Set<string>()
  return json.map((item: unknown, i) => {
    const where = `secrets[${i}]`
    if (typeof item !== 'object' || item === null)
      throw new SecretError(`${where} must be { name, placeholder, value, hosts, header, scheme }`)
    const b = item as Record<string, unknown>
    if (typeof b.name !== 'string' || !SECRET_NAME.test(b.name))
      throw new SecretError(`${where}: name must be lowercase letters, digits, - and _`)
    const placeholder = checkPlaceholder(b.placeholder, `secret ${b.name}`)
    if (seen.has(placeholder)) throw new SecretError(`secret ${b.name}: placeholder used twice`)
    seen.add(placeholder)
    return {
      name: b.name,
      placeholder,
      value: checkSecretValue(b.value, `secret ${b.name}`),
      hosts: parseSecretHosts(b.hosts, `secret ${b.name}`),
      ...parseForm(b.header, b.scheme, `secret ${b.name}`),
    }
  })
}

export function publicBinding(binding: SecretBinding): PublicSecretBinding {
  const { value: _value, ...rest } = binding
  return rest
}

/** A new placeholder: names the secret (for people reading a sandbox's env) plus 128 random bits. */
export function newPlaceholder(name: string): string {
  return `isorun-secret-${name}-${randomBytes(16).toString('hex')}`
}
