// Budgets (`limits:` in profiles and network specs) and the sizes and
// durations they are written with. Pure: the proxy's budget ledger
// (src/proxy/budgets.ts) keeps the usage; this file only says what a limit is
// and which limit covers a destination.

import type { CanonicalHost } from './host.js'
import { RuleIndex } from './matcher.js'
import { parseRule, RuleError } from './rule.js'

/** One budget as a policy carries it: bytes and request counts per rule pattern. */
export interface LimitSource {
  /** A rule pattern (`api.example.com`, `*.example.com:8443`, `10.0.0.0/8`). */
  readonly pattern: string
  /** Bytes the sandbox may send to the destinations the pattern covers. */
  readonly upload?: number
  /** Bytes it may receive from them. */
  readonly download?: number
  /** Requests (HTTP requests the proxy read, or connections) it may make to them. */
  readonly requests?: number
  /** A rolling window; absent for the sandbox's lifetime. */
  readonly windowMs?: number
  /** The profile the limit came from (`custom` for a network spec). */
  readonly from: string
}

/** A compiled limit: its canonical pattern is the budget's key. */
export interface Limit extends LimitSource {
  readonly key: string
}

export class LimitError extends Error {}

export const LIMIT_FIELDS = ['upload', 'download', 'requests', 'window'] as const

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/** `10MB` (decimal), `10MiB` (binary), `512` (bytes) → bytes. */
export function parseSize(value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value
    throw new LimitError(`${value} is not a whole number of bytes`)
  }
  if (typeof value !== 'string')
    throw new LimitError('must be a size such as 10MB, 512KiB or a number of bytes')
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value)
  const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase() || 'b']
  if (!m || unit === undefined)
    throw new LimitError(
      `"${value}" is not a size; write a number with B, KB, MB, GB, KiB, MiB or GiB`,
    )
  const bytes = Math.round(Number(m[1]) * unit)
  if (!Number.isSafeInteger(bytes)) throw new LimitError(`"${value}" is too large`)
  return bytes
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

/** `90s`, `10m`, `1h`, `2d`, `500ms` → milliseconds. */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value > 0) return value
    throw new LimitError(`${value} is not a positive whole number of milliseconds`)
  }
  if (typeof value !== 'string') throw new LimitError('must be a duration such as 30s, 10m or 1h')
  const m = /^\s*(\d+)\s*(ms|s|m|h|d)\s*$/.exec(value)
  if (!m) throw new LimitError(`"${value}" is not a duration; write e.g. 30s, 10m, 1h or 1d`)
  const ms = Number(m[1]) * (DURATION_UNITS[m[2] as string] as number)
  if (ms <= 0 || !Number.isSafeInteger(ms)) throw new LimitError(`"${value}" must be positive`)
  return ms
}

/**
 * One limit as written (`{ upload: 10MB, download: 1GB, requests: 1000, window: 1h }`)
 * → its source form; `window: lifetime` (or none) is the sandbox's lifetime.
 */
export function parseLimitFields(
  pattern: string,
  fields: Readonly<Record<string, unknown>>,
  from: string,
): LimitSource {
  const problem = (field: string, err: unknown): never => {
    if (err instanceof LimitError) throw new LimitError(`${field}: ${err.message}`)
    throw err
  }
  let rule
  try {
    rule = parseRule(pattern)
  } catch (err) {
    if (err instanceof RuleError) throw new LimitError(`pattern "${pattern}": ${err.message}`)
    throw err
  }
  if (rule.raw) throw new LimitError(`pattern "${pattern}": write the pattern without tcp:`)
  for (const key of Object.keys(fields)) {
    if (!(LIMIT_FIELDS as readonly string[]).includes(key))
      throw new LimitError(`unknown field "${key}"; a limit takes ${LIMIT_FIELDS.join(', ')}`)
  }
  const out: { -readonly [K in keyof LimitSource]: LimitSource[K] } = { pattern, from }
  try {
    if (fields.upload !== undefined) out.upload = parseSize(fields.upload)
  } catch (err) {
    problem('upload', err)
  }
  try {
    if (fields.download !== undefined) out.download = parseSize(fields.download)
  } catch (err) {
    problem('download', err)
  }
  if (fields.requests !== undefined) {
    const n = fields.requests
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
      throw new LimitError('requests: must be a whole number of requests')
    out.requests = n
  }
  if (fields.window !== undefined && fields.window !== 'lifetime') {
    try {
      out.windowMs = parseDuration(fields.window)
    } catch (err) {
      problem('window', err)
    }
  }
  if (out.upload === undefined && out.download === undefined && out.requests === undefined)
    throw new LimitError('sets no budget; give upload, download or requests')
  return out
}

/** A limit source from JSON (what the runner sends its proxies), checked. */
export function limitFromJson(value: unknown, index: number): LimitSource {
  const field = `limits[${index}]`
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new LimitError(`${field} must be { pattern, upload?, download?, requests?, windowMs? }`)
  const v = value as Record<string, unknown>
  if (typeof v.pattern !== 'string') throw new LimitError(`${field}.pattern must be a string`)
  const { pattern, from, windowMs, ...rest } = v
  if (windowMs !== undefined && (typeof windowMs !== 'number' || windowMs <= 0))
    throw new LimitError(`${field}.windowMs must be a positive number`)
  try {
    const parsed = parseLimitFields(
      pattern,
      { ...rest, ...(windowMs !== undefined ? { window: windowMs } : {}) },
      typeof from === 'string' ? from : 'custom',
    )
    return parsed
  } catch (err) {
    if (err instanceof LimitError) throw new LimitError(`${field}: ${err.message}`)
    throw err
  }
}

/** The limits of a policy, found by destination the way rules are (most specific pattern first). */
export class LimitIndex {
  private readonly index: RuleIndex
  private readonly byKey = new Map<string, Limit>()

  constructor(sources: readonly LimitSource[]) {
    const rules = sources.map((source) => {
      let rule
      try {
        rule = parseRule(source.pattern)
      } catch (err) {
        if (err instanceof RuleError)
          throw new LimitError(`limit pattern "${source.pattern}": ${err.message}`)
        throw err
      }
      if (this.byKey.has(rule.canonical))
        throw new LimitError(`two limits for the pattern ${rule.canonical}; merge them`)
      this.byKey.set(rule.canonical, { ...source, key: rule.canonical })
      return { ...rule, from: source.from }
    })
    this.index = new RuleIndex(rules)
  }

  get size(): number {
    return this.byKey.size
  }

  all(): Limit[] {
    return [...this.byKey.values()]
  }

  /** The limit whose pattern covers a destination, if any. */
  match(host: CanonicalHost, port: number): Limit | undefined {
    if (this.byKey.size === 0) return undefined
    const hit = this.index.match(host, port)
    return hit ? this.byKey.get(hit.canonical) : undefined
  }
}

/** `1048576` → `1.0 MiB`, for messages. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${units[unit]}`
}

/** `3600000` → `1h`, for messages. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`
  return `${ms}ms`
}
