// Endpoint rules: per-host method and path rules, evaluated in order, first
// match wins. They narrow what an allowed host may be asked; they never allow
// a host by themselves. A host that has endpoint rules and a request that none
// of them matches is denied.
//
// Paths are matched in one canonical form. Spellings that servers interpret in
// different ways (`..`, `.`, `%2e`, `%2f`, `%5c`, `\`, `//`) are refused
// instead of normalised, so no rule can be sidestepped by a path the upstream
// server would resolve elsewhere.

import { createRequire } from 'node:module'
import { canonicalHost, HostError } from './host.js'
import { SuffixTable } from './suffix-table.js'

/**
 * minimatch, loaded when a policy with endpoint rules is compiled: most policies
 * have none, and a proxy should not hold the module for nothing. Loaded
 * synchronously (its CommonJS build).
 */
let globs: typeof import('minimatch') | undefined
function loadMinimatch(): typeof import('minimatch') {
  globs ??= createRequire(import.meta.url)('minimatch') as typeof import('minimatch')
  return globs
}

function minimatch(
  path: string,
  pattern: string,
  options: import('minimatch').MinimatchOptions,
): boolean {
  return (globs ?? loadMinimatch()).minimatch(path, pattern, options)
}

export type EndpointAction = 'allow' | 'deny'

export interface EndpointRule {
  /** Uppercase methods; empty means any method. */
  readonly methods: readonly string[]
  /** A glob over the path (`*` within a segment, `**` across segments). */
  readonly path: string
  readonly action: EndpointAction
}

export interface EndpointSet {
  /** `example.com` or `*.example.com`, canonical. */
  readonly host: string
  readonly rules: readonly EndpointRule[]
  readonly from: string
}

export class EndpointError extends Error {}

const METHOD = /^[A-Z][A-Z0-9-]{0,31}$/

export function parseEndpointHost(text: string): string {
  const wildcard = text.startsWith('*.')
  const base = wildcard ? text.slice(2) : text
  try {
    const host = canonicalHost(base)
    if (host.kind !== 'name')
      throw new EndpointError(`endpoint host "${text}" must be a name, not an IP address`)
    return wildcard ? `*.${host.name}` : host.name
  } catch (err) {
    if (err instanceof HostError) throw new EndpointError(`endpoint host "${text}": ${err.message}`)
    throw err
  }
}

export function parseEndpointRule(input: {
  methods?: readonly string[]
  path?: string
  action: EndpointAction
}): EndpointRule {
  const methods = (input.methods ?? []).map((m) => m.toUpperCase())
  for (const m of methods) {
    if (!METHOD.test(m))
      throw new EndpointError(`"${m}" is not an HTTP method (write e.g. GET, POST)`)
  }
  const path = input.path ?? '/**'
  if (!path.startsWith('/')) throw new EndpointError(`path "${path}" must start with "/"`)
  const problem = pathProblem(path.replace(/\*+/g, 'x'))
  if (problem) throw new EndpointError(`path "${path}": ${problem}`)
  return { methods, path, action: input.action }
}

/**
 * Why a request path cannot be matched safely, or undefined when it can. One
 * spelling per path: whatever an origin server might read as another path
 * (after decoding once or twice, normalising Unicode, trimming what Windows
 * trims, cutting path parameters) is refused rather than normalised, so that
 * the path decided on is the path every server reads. The table of readings is
 * in test/unit/policy/path-readings.test.ts.
 */
export function pathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'does not start with "/"'
  if (path.includes('//')) return 'contains an empty segment ("//")'
  if (path.includes('\\')) return 'contains a backslash'
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f]/.test(path)) return 'contains whitespace or control characters'
  if (/[^\x21-\x7e]/.test(path)) return 'contains a character outside printable ASCII'
  if (/%(?![0-9a-f]{2})/i.test(path)) return 'contains a malformed percent-encoding'
  if (/%(?:2e|2f|5c|00)/i.test(path)) return 'contains an encoded ".", "/", "\\" or NUL'
  // Servers decode these (RFC 3986 §2.3), so /%61dmin is /admin to them: one spelling only.
  if (/%(?:[46][1-9a-f]|[57][0-9a]|3[0-9]|2d|5f|7e)/i.test(path))
    return 'percent-encodes a letter, digit or "-", "_", "~" (write it plainly)'
  // A second decoding (a proxy or framework in front of the application) reads %252e as ".".
  if (/%25/i.test(path))
    return 'contains an encoded "%" ("%25"), which a second decoding reads again'
  // Servers that decode before splitting off the query or fragment read less of the path.
  if (/%(?:3f|23)/i.test(path)) return 'contains an encoded "?" or "#"'
  if (/%(?:[01][0-9a-f]|7f)/i.test(path)) return 'percent-encodes a control character'
  // Path parameters (;jsessionid=…) are cut off by some servers before routing.
  if (path.includes(';')) return 'contains ";"'
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') return `contains a "${segment}" segment`
    if (!segment.includes('%')) {
      if (segment.endsWith('.'))
        return `has a segment ending in "." ("${segment}"), which Windows servers drop`
      continue
    }
    const decoded = decodeSegment(segment)
    // Overlong forms (%c0%ae is "." to lax decoders) and stray bytes are invalid UTF-8.
    if (decoded === undefined) return `segment "${segment}" decodes to invalid UTF-8`
    // Servers that normalise (NFKC) read the fullwidth "．" as "." and a no-break space as a space.
    if (decoded.normalize('NFKC') !== decoded)
      return `segment "${segment}" has characters that Unicode normalisation changes`
    // Case-insensitive servers that fold in Unicode read "prıvate" (dotless ı) as "PRIVATE".
    if (foldsToAscii(decoded))
      return `segment "${segment}" has a character whose upper or lower case is ASCII`
    if (/[.\s]$/u.test(decoded))
      return `has a segment ending in "." or whitespace ("${segment}"), which Windows servers drop`
  }
  // NTFS alternate data streams: /private::$DATA is /private to IIS.
  if (path.includes('::$')) return 'names an NTFS data stream ("::$")'
  return undefined
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

/** Whether a non-ASCII character in `text` turns into an ASCII letter when its case changes. */
function foldsToAscii(text: string): boolean {
  for (const ch of text) {
    if (ch <= '\x7f') continue
    if (/[A-Za-z]/.test(ch.toUpperCase() + ch.toLowerCase())) return true
  }
  return false
}

/** A path segment with its (well-formed) percent-escapes decoded as UTF-8; undefined if invalid. */
function decodeSegment(segment: string): string | undefined {
  const bytes: number[] = []
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '%') {
      bytes.push(parseInt(segment.slice(i + 1, i + 3), 16))
      i += 2
    } else bytes.push(segment.charCodeAt(i))
  }
  try {
    return UTF8.decode(Uint8Array.from(bytes))
  } catch {
    return undefined
  }
}

/** The path part of a request target: no query, no fragment. */
export function requestPath(target: string): string {
  let end = target.length
  const q = target.indexOf('?')
  if (q >= 0) end = q
  const h = target.indexOf('#')
  if (h >= 0 && h < end) end = h
  return target.slice(0, end)
}

/**
 * The request target as it is decided and forwarded: without a fragment. A
 * fragment is the client's alone (RFC 9110 §4.2.4) and some servers read a
 * "#" in the path as part of it, so it is never sent.
 */
export function withoutFragment(target: string): string {
  const h = target.indexOf('#')
  return h < 0 ? target : target.slice(0, h)
}

/**
 * Headers that make servers and frameworks act on another method or path than
 * the request line's (Express method-override, ASP.NET, Google APIs, Symfony
 * and IIS rewrites). Endpoint rules decide on the request line, so a request
 * that carries one is refused on hosts that have endpoint rules.
 */
export const OVERRIDE_HEADERS: ReadonlySet<string> = new Set([
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-method',
  'x-original-url',
  'x-rewrite-url',
  'x-override-url',
])

/**
 * The override headers in a raw header list (`[name, value, …]`), lowercase as
 * sent. CGI and PHP read "_" in a header name as "-" (both become HTTP_X_…), so
 * `X_HTTP_Method_Override` counts too.
 */
export function overrideHeadersIn(raw: readonly string[]): string[] {
  const found: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (OVERRIDE_HEADERS.has(name.replace(/_/g, '-')) && !found.includes(name)) found.push(name)
  }
  return found
}

/**
 * Why a request's method or path may be read from somewhere else than its
 * request line: an override header, or a `_method` query parameter (Rails,
 * Laravel, Symfony, method-override), in any case, percent-encoded or not, and
 * in the spellings PHP turns into `_method` (it reads " " and "." in a
 * parameter name as "_": `.method`, `_method[]`).
 */
export function overrideProblem(
  target: string,
  overrides: readonly string[] | undefined,
): string | undefined {
  if (overrides !== undefined && overrides.length > 0)
    return `carries ${overrides.join(', ')}, which overrides the method or path`
  const q = target.indexOf('?')
  if (q < 0) return undefined
  for (const pair of target.slice(q + 1).split(/[&;]/)) {
    const name = pair.split('=')[0] ?? ''
    let decoded = name
    try {
      decoded = decodeURIComponent(name.replace(/\+/g, ' '))
    } catch {
      // A malformed escape: compare the raw text.
    }
    if (/^_method(?:$|\[)/i.test(decoded.trim().replace(/[ .]/g, '_')))
      return 'has a "_method" query parameter, which overrides the method'
  }
  return undefined
}

export interface EndpointMatch {
  readonly action: EndpointAction
  /** `GET /repos/**` style text of the rule that matched, or undefined when none did. */
  readonly rule: string | undefined
  readonly from: string
}

export function describeEndpointRule(rule: EndpointRule): string {
  return `${rule.methods.length ? rule.methods.join(',') : '*'} ${rule.path}`
}

/** First endpoint rule that matches; a request none matches is denied. */
export function matchEndpoint(set: EndpointSet, method: string, path: string): EndpointMatch {
  const upper = method.toUpperCase()
  for (const rule of set.rules) {
    if (rule.methods.length > 0 && !rule.methods.includes(upper)) continue
    if (!pathMatches(path, rule)) continue
    return { action: rule.action, rule: describeEndpointRule(rule), from: set.from }
  }
  return { action: 'deny', rule: undefined, from: set.from }
}

const GLOB_OPTIONS = { dot: true, nocomment: true, nonegate: true, noext: true } as const

/**
 * Whether a path matches a rule's glob. `/x/**` also covers `/x` itself. Deny
 * rules ignore case (some servers do), allow rules do not: both fail closed.
 */
function pathMatches(path: string, rule: EndpointRule): boolean {
  const options = rule.action === 'deny' ? { ...GLOB_OPTIONS, nocase: true } : GLOB_OPTIONS
  if (minimatch(path, rule.path, options)) return true
  if (!rule.path.endsWith('/**')) return false
  const parent = rule.path.slice(0, -3)
  return rule.action === 'deny' ? path.toLowerCase() === parent.toLowerCase() : path === parent
}

/** Endpoint sets by host: exact names, then the longest wildcard suffix. */
export class EndpointIndex {
  private readonly exact = new Map<string, EndpointSet>()
  private readonly wildcard = new SuffixTable<EndpointSet>()

  constructor(sets: readonly EndpointSet[]) {
    if (sets.length > 0) loadMinimatch()
    // Sets arrive in precedence order (a profile's own before its includes'); for the
    // same host, the rules of a later set are tried after those of an earlier one.
    const merged = new Map<string, EndpointSet>()
    for (const set of sets) {
      const existing = merged.get(set.host)
      merged.set(
        set.host,
        existing ? { ...existing, rules: [...existing.rules, ...set.rules] } : set,
      )
    }
    for (const [host, set] of merged) {
      if (host.startsWith('*.')) this.wildcard.add(host.slice(2), set)
      else this.exact.set(host, set)
    }
  }

  get size(): number {
    return this.exact.size + this.wildcard.size
  }

  /** The set for a name: its exact host, else the longest matching wildcard. */
  lookup(name: string): EndpointSet | undefined {
    return this.exact.get(name) ?? this.wildcard.longestMatch(name, (sets) => sets[0])
  }
}
