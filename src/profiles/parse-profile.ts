// Parses and validates one profile YAML file. Every error names the file, the
// line and column, and the field, and says what to write instead: operators
// read these in `isorun profiles` output and the runner's log.

import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Node,
  type Pair,
  type YAMLMap,
} from 'yaml'
import {
  approvalProblem,
  EndpointError,
  isMode,
  LimitError,
  parseLimitFields,
  type LimitSource,
  type OnUnknown,
  MODES,
  parseEndpointHost,
  parseEndpointRule,
  parseListRule,
  RuleError,
  type EndpointRule,
  type Mode,
} from '../policy/index.js'

export const PROFILE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/

export interface ProfileEndpoints {
  readonly host: string
  readonly rules: readonly EndpointRule[]
}

/** A profile as written in one file, validated but with includes not yet resolved. */
export interface ProfileDefinition {
  readonly name: string
  readonly description: string
  readonly mode: Mode
  readonly include: readonly string[]
  /** Where each include entry is written, for errors found when includes are resolved. */
  readonly includeAt: readonly { readonly line: number; readonly column: number }[]
  /** Rules as written (trimmed); each one parses. */
  readonly allow: readonly string[]
  readonly deny: readonly string[]
  readonly endpoints: readonly ProfileEndpoints[]
  /** TLS to the hosts this profile's allow rules allow is intercepted (decrypted and decided per request). */
  readonly inspect: boolean
  /** `ask`: hold requests no rule allows and ask (allow-list mode); absent means deny. */
  readonly onUnknown?: OnUnknown
  readonly approvalTimeoutMs?: number
  /** Budgets per rule pattern, tagged with this profile's name. */
  readonly limits: readonly LimitSource[]
  readonly file: string
}

export class ProfileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    readonly field: string | undefined,
    readonly problem: string,
  ) {
    super(`${file}:${line}:${column}: ${field ? `${field}: ` : ''}${problem}`)
  }
}

/** The fields that make a policy: a profile's besides its name and description, and a network spec's. */
export const POLICY_FIELDS = [
  'mode',
  'include',
  'allow',
  'deny',
  'endpoints',
  'inspect',
  'onUnknown',
  'approvalTimeoutMs',
  'limits',
] as const
const FIELDS = ['name', 'description', ...POLICY_FIELDS] as const
const ENDPOINT_FIELDS = ['methods', 'path', 'action'] as const

export class Reader {
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  fail(node: Node | Pair | null | undefined, field: string | undefined, problem: string): never {
    const offset = nodeOffset(node)
    const pos = this.lines.linePos(offset)
    throw new ProfileError(this.file, pos.line, pos.col, field, problem)
  }

  string(node: unknown, field: string): string {
    if (!isScalar(node) || typeof node.value !== 'string')
      this.fail(node as Node, field, 'must be a string')
    return node.value
  }

  stringList(node: unknown, field: string): { value: string; node: Node }[] {
    if (node === null || node === undefined || (isScalar(node) && node.value === null)) return []
    if (!isSeq(node))
      this.fail(node as Node, field, 'must be a list, e.g. [a, b] or one "- item" per line')
    return node.items.map((item, i) => {
      if (!isScalar(item) || (typeof item.value !== 'string' && typeof item.value !== 'number')) {
        this.fail(item as Node, `${field}[${i}]`, 'must be a string')
      }
      return { value: String(item.value), node: item }
    })
  }
}

export function nodeOffset(node: Node | Pair | null | undefined): number {
  if (!node) return 0
  if ('range' in node && node.range) return node.range[0]
  if ('key' in node && node.key && typeof node.key === 'object' && 'range' in node.key) {
    return (node.key as Node).range?.[0] ?? 0
  }
  return 0
}

export function keyOf(pair: Pair): string | undefined {
  return isScalar(pair.key) && typeof pair.key.value === 'string' ? pair.key.value : undefined
}

/** Edit distance, for "did you mean" on misspelled field names. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      )
    }
    previous = current
  }
  return previous[b.length] ?? 0
}

function suggest(word: string, options: readonly string[]): string {
  const close = options.find((o) => distance(word.toLowerCase(), o) <= 2)
  return close ? ` (did you mean "${close}"?)` : ''
}

function readEndpoints(reader: Reader, node: unknown): ProfileEndpoints[] {
  if (node === null || node === undefined || (isScalar(node) && node.value === null)) return []
  if (!isMap(node)) reader.fail(node as Node, 'endpoints', 'must be a map of host: [rules]')
  const out: ProfileEndpoints[] = []
  for (const pair of (node as YAMLMap).items) {
    const hostText = keyOf(pair)
    if (hostText === undefined) reader.fail(pair, 'endpoints', 'host keys must be strings')
    const field = `endpoints.${hostText}`
    let host: string
    try {
      host = parseEndpointHost(hostText)
    } catch (err) {
      if (err instanceof EndpointError) reader.fail(pair, field, err.message)
      throw err
    }
    if (!isSeq(pair.value))
      reader.fail(
        (pair.value as Node) ?? pair,
        field,
        'must be a list of rules like {methods: [GET], path: /x/**, action: allow}',
      )
    const rules = pair.value.items.map((item, i) =>
      readEndpointRule(reader, item, `${field}[${i}]`),
    )
    if (rules.length === 0) reader.fail(pair, field, 'has no rules; remove it or add rules')
    out.push({ host, rules })
  }
  return out
}

function readEndpointRule(reader: Reader, node: unknown, field: string): EndpointRule {
  if (!isMap(node)) reader.fail(node as Node, field, 'must be a map with methods, path and action')
  let methods: string[] | undefined
  let path: string | undefined
  let action: 'allow' | 'deny' | undefined
  for (const pair of (node as YAMLMap).items) {
    const key = keyOf(pair)
    switch (key) {
      case 'methods':
        methods = reader.stringList(pair.value, `${field}.methods`).map((m) => m.value)
        break
      case 'path':
        path = reader.string(pair.value, `${field}.path`)
        break
      case 'action': {
        const value = reader.string(pair.value, `${field}.action`)
        if (value !== 'allow' && value !== 'deny')
          reader.fail(pair.value as Node, `${field}.action`, 'must be allow or deny')
        action = value
        break
      }
      default:
        reader.fail(
          pair,
          field,
          `unknown field "${String(key)}"; endpoint rules take ${ENDPOINT_FIELDS.join(', ')}`,
        )
    }
  }
  if (!action) reader.fail(node as Node, field, 'needs an action: allow or deny')
  try {
    return parseEndpointRule({ methods, path, action })
  } catch (err) {
    if (err instanceof EndpointError) reader.fail(node as Node, field, err.message)
    throw err
  }
}

/**
 * Parses the text of one profile file. `file` is used in error messages and as
 * the expected name (the file name without `.yaml`/`.yml`), unless `expectedName`
 * is given explicitly.
 */
/** Parses YAML text, throwing a ProfileError at the first syntax error; the reader reports positions. */
export function readYaml(
  text: string,
  file: string,
): { root: Node | null; reader: Reader; lines: LineCounter } {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false })
  const syntax = doc.errors[0]
  if (syntax) {
    const pos = lines.linePos(syntax.pos[0])
    const message =
      syntax.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? 'syntax error'
    throw new ProfileError(file, pos.line, pos.col, undefined, `YAML syntax error: ${message}`)
  }
  return { root: doc.contents, reader: new Reader(file, lines), lines }
}

export function parseProfile(text: string, file: string, expectedName?: string): ProfileDefinition {
  const yaml = readYaml(text, file)
  // Typed explicitly, so that TypeScript narrows after reader.fail() (it returns never).
  const reader: Reader = yaml.reader
  const { root, lines } = yaml
  if (!isMap(root))
    reader.fail(
      root,
      undefined,
      'a profile is a map with name, description, mode, include, allow, deny and endpoints',
    )

  const fields = new Map<string, Pair>()
  for (const pair of root.items) {
    const key = keyOf(pair)
    if (key === undefined || !(FIELDS as readonly string[]).includes(key)) {
      reader.fail(
        pair,
        String(key),
        `unknown field${key ? suggest(key, FIELDS) : ''}; a profile has ${FIELDS.join(', ')}`,
      )
    }
    fields.set(key, pair)
  }

  const namePair = fields.get('name')
  if (!namePair) reader.fail(root, 'name', 'missing; every profile needs a name')
  const name = reader.string(namePair.value, 'name')
  if (!PROFILE_NAME.test(name)) {
    reader.fail(
      namePair.value as Node,
      'name',
      `"${name}" must be lowercase letters, digits and hyphens, starting with a letter or digit`,
    )
  }
  const stem = expectedName ?? file.replace(/^.*[\\/]/, '').replace(/\.ya?ml$/, '')
  if (name !== stem)
    reader.fail(
      namePair.value as Node,
      'name',
      `"${name}" must match the file name "${stem}"; rename one of them`,
    )

  const descriptionPair = fields.get('description')
  const description = descriptionPair ? reader.string(descriptionPair.value, 'description') : ''

  const modePair = fields.get('mode')
  let mode: Mode = 'allow-list'
  if (modePair) {
    const value = reader.string(modePair.value, 'mode')
    if (!isMode(value))
      reader.fail(
        modePair.value as Node,
        'mode',
        `"${value}" is not a mode; use one of ${MODES.join(', ')}`,
      )
    mode = value
  }

  const includeEntries = reader.stringList(fields.get('include')?.value, 'include')
  for (const { value, node } of includeEntries) {
    if (!PROFILE_NAME.test(value)) reader.fail(node, 'include', `"${value}" is not a profile name`)
    if (value === name) reader.fail(node, 'include', `a profile cannot include itself`)
  }
  const include = includeEntries.map((e) => e.value)
  const includeAt = includeEntries.map((e) => {
    const pos = lines.linePos(nodeOffset(e.node))
    return { line: pos.line, column: pos.col }
  })

  const rules = (field: 'allow' | 'deny'): string[] =>
    reader.stringList(fields.get(field)?.value, field).map(({ value, node }, i) => {
      try {
        return parseListRule(field, value).text
      } catch (err) {
        if (err instanceof RuleError) reader.fail(node, `${field}[${i}]`, err.message)
        throw err
      }
    })
  const allow = rules('allow')
  const deny = rules('deny')
  if (mode === 'deny-all' && (allow.length > 0 || include.length > 0)) {
    reader.fail(
      (fields.get('allow') ?? fields.get('include')) as Pair,
      allow.length > 0 ? 'allow' : 'include',
      'mode deny-all refuses everything, so allow rules and includes would never apply; use mode allow-list',
    )
  }
  const endpoints = readEndpoints(reader, fields.get('endpoints')?.value)
  const inspectPair = fields.get('inspect')
  let inspect = false
  if (inspectPair) {
    const node = inspectPair.value
    if (!isScalar(node) || typeof node.value !== 'boolean')
      reader.fail(
        (node as Node | null) ?? inspectPair,
        'inspect',
        'must be true or false (true: TLS to the hosts this profile allows is intercepted)',
      )
    inspect = node.value
  }
  const onUnknownPair = fields.get('onUnknown')
  const onUnknown = onUnknownPair ? reader.string(onUnknownPair.value, 'onUnknown') : undefined
  const timeoutPair = fields.get('approvalTimeoutMs')
  const approvalTimeoutMs = timeoutPair
    ? isScalar(timeoutPair.value)
      ? timeoutPair.value.value
      : null
    : undefined
  const approval = approvalProblem(mode, onUnknown, approvalTimeoutMs)
  if (approval) {
    const at = approval.startsWith('approvalTimeoutMs') ? timeoutPair : onUnknownPair
    reader.fail(
      (at?.value as Node | undefined) ?? at ?? root,
      at === timeoutPair ? 'approvalTimeoutMs' : 'onUnknown',
      approval,
    )
  }
  const limits = readLimits(reader, fields.get('limits')?.value, name)
  return {
    name,
    description,
    mode,
    include,
    includeAt,
    allow,
    deny,
    endpoints,
    inspect,
    ...(onUnknown !== undefined ? { onUnknown: onUnknown as OnUnknown } : {}),
    ...(approvalTimeoutMs !== undefined ? { approvalTimeoutMs: approvalTimeoutMs as number } : {}),
    limits,
    file,
  }
}

/** `limits: { PATTERN: { upload: 10MB, download: 1GB, requests: 100, window: 1h } }`. */
function readLimits(reader: Reader, node: unknown, from: string): LimitSource[] {
  if (node === null || node === undefined || (isScalar(node) && node.value === null)) return []
  if (!isMap(node))
    reader.fail(
      node as Node,
      'limits',
      'must be a map of pattern: { upload, download, requests, window }',
    )
  return (node as YAMLMap).items.map((pair) => {
    const pattern = keyOf(pair)
    if (pattern === undefined) reader.fail(pair, 'limits', 'patterns must be strings')
    const field = `limits.${pattern}`
    if (!isMap(pair.value))
      reader.fail(
        (pair.value as Node | null) ?? pair,
        field,
        'must be a map such as { upload: 10MB, requests: 100, window: 1h }',
      )
    const fields: Record<string, unknown> = {}
    for (const item of pair.value.items) {
      const key = keyOf(item)
      if (key === undefined || !isScalar(item.value))
        reader.fail(item, field, 'each budget is a key with a single value, e.g. upload: 10MB')
      fields[key] = item.value.value
    }
    try {
      return parseLimitFields(pattern, fields, from)
    } catch (err) {
      if (err instanceof LimitError) reader.fail(pair, field, err.message)
      throw err
    }
  })
}
