// The operator's secrets file (ISORUN_SECRETS_FILE for the runner,
// `isorun proxy --secrets FILE` standalone). YAML, checked like a profile:
// every error names the file, line, column and field. Values are read from
// the environment or from files when the file is loaded, and never appear in
// an error.
//
//   secrets:
//     anthropic:                              # the name create({ secrets: [...] }) uses
//       env: ANTHROPIC_API_KEY                # variable the sandbox gets, holding a placeholder
//       from: { env: ISORUN_SECRET_ANTHROPIC }  # or { file: /run/secrets/anthropic }
//       hosts: [api.anthropic.com]            # names or *.domain the value may go to
//       header: x-api-key                     # sent as  x-api-key: <value>
//     github:
//       env: GITHUB_TOKEN
//       from: { file: /run/secrets/github-token }
//       hosts: [github.com, api.github.com]
//       header: authorization
//       scheme: basic                         # raw (default) | bearer | basic

import { readFileSync } from 'node:fs'
import { isMap, isScalar, type Node, type Pair, type YAMLMap } from 'yaml'
import { keyOf, readYaml, type Reader } from '../profiles/parse-profile.js'
import {
  checkPlaceholder,
  checkSecretValue,
  parseForm,
  parseSecretHosts,
  SECRET_NAME,
  SecretError,
  type SecretForm,
} from './binding.js'

export interface OperatorSecret extends SecretForm {
  readonly name: string
  /** The environment variable that holds the placeholder in a sandbox. */
  readonly env: string
  readonly hosts: readonly string[]
  readonly value: string
  /** A fixed placeholder, for `isorun proxy --secrets`; the runner makes one per sandbox. */
  readonly placeholder?: string
}

const FIELDS = ['env', 'from', 'hosts', 'header', 'scheme', 'placeholder'] as const
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Reads and checks a secrets file, resolving each value. */
export function loadSecretsFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): OperatorSecret[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SecretError(`cannot read the secrets file ${file}: ${(err as Error).message}`)
  }
  return parseSecretsFile(text, file, env)
}

export function parseSecretsFile(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): OperatorSecret[] {
  const yaml = readYaml(text, file)
  const reader: Reader = yaml.reader
  const root = yaml.root
  if (!isMap(root)) reader.fail(root, undefined, 'a secrets file is a map with one key, secrets')
  const top = root.items.find((p) => keyOf(p) === 'secrets')
  const extra = root.items.find((p) => keyOf(p) !== 'secrets')
  if (extra) reader.fail(extra, keyOf(extra), 'unknown field; a secrets file has one key, secrets')
  if (!top || (isScalar(top.value) && top.value.value === null)) return []
  if (!isMap(top.value))
    reader.fail(top, 'secrets', 'must be a map of name: { env, from, hosts, header }')
  const out: OperatorSecret[] = []
  const envNames = new Set<string>()
  for (const pair of (top.value as YAMLMap).items) {
    const name = keyOf(pair)
    if (name === undefined || !SECRET_NAME.test(name))
      reader.fail(pair, 'secrets', `"${String(name)}" must be lowercase letters, digits, - and _`)
    const secret = readSecret(reader, pair, name, env, readFile)
    if (envNames.has(secret.env))
      reader.fail(pair, `secrets.${name}.env`, `${secret.env} is used by another secret too`)
    envNames.add(secret.env)
    out.push(secret)
  }
  return out
}

function readSecret(
  reader: Reader,
  pair: Pair,
  name: string,
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string,
): OperatorSecret {
  const field = `secrets.${name}`
  if (!isMap(pair.value)) reader.fail(pair, field, 'must be a map with env, from, hosts and header')
  const fields = new Map<string, Pair>()
  for (const p of (pair.value as YAMLMap).items) {
    const key = keyOf(p)
    if (key === undefined || !(FIELDS as readonly string[]).includes(key))
      reader.fail(p, `${field}.${String(key)}`, `unknown field; a secret has ${FIELDS.join(', ')}`)
    fields.set(key, p)
  }
  const need = (key: string): Pair => {
    const p = fields.get(key)
    if (!p) reader.fail(pair, `${field}.${key}`, 'missing')
    return p
  }
  const plain = (p: Pair | undefined): unknown => (isScalar(p?.value) ? p.value.value : undefined)
  /** Runs a check from binding.ts and reports its error at the pair's position. */
  const at = <T>(p: Pair, key: string, check: (where: string) => T): T => {
    try {
      return check(`${field}.${key}`)
    } catch (err) {
      if (err instanceof SecretError) reader.fail(p, undefined, err.message)
      throw err
    }
  }

  const envPair = need('env')
  const envName = reader.string(envPair.value, `${field}.env`)
  if (!ENV_NAME.test(envName))
    reader.fail(
      envPair.value as Node,
      `${field}.env`,
      `"${envName}" is not an environment variable name`,
    )

  const hostsPair = need('hosts')
  const hosts = reader.stringList(hostsPair.value, `${field}.hosts`).map((h) => h.value)
  const canonicalHosts = at(hostsPair, 'hosts', (where) => parseSecretHosts(hosts, where))

  const headerPair = need('header')
  const form = at(headerPair, 'header', (where) =>
    parseForm(plain(headerPair), plain(fields.get('scheme')), where),
  )

  const placeholderPair = fields.get('placeholder')
  const placeholder = placeholderPair
    ? at(placeholderPair, 'placeholder', (where) => checkPlaceholder(plain(placeholderPair), where))
    : undefined

  const fromPair = need('from')
  const value = at(fromPair, 'from', (where) => readValue(fromPair, where, env, readFile))
  return {
    name,
    env: envName,
    hosts: canonicalHosts,
    ...form,
    value,
    ...(placeholder ? { placeholder } : {}),
  }
}

/** `{ env: NAME }` or `{ file: PATH }`; a file's one trailing newline is dropped. */
function readValue(
  pair: Pair,
  where: string,
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string,
): string {
  const source = isMap(pair.value)
    ? ((pair.value as YAMLMap).toJSON() as Record<string, unknown>)
    : undefined
  const keys = source ? Object.keys(source) : []
  if (!source || keys.length !== 1 || (keys[0] !== 'env' && keys[0] !== 'file'))
    throw new SecretError(`${where}: must be { env: VARIABLE } or { file: /path/to/file }`)
  if (typeof source.env === 'string') {
    const value = env[source.env]
    if (value === undefined || value === '')
      throw new SecretError(`${where}: environment variable ${source.env} is not set or empty`)
    return checkSecretValue(value, where)
  }
  if (typeof source.file === 'string') {
    let text: string
    try {
      text = readFile(source.file)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error'
      throw new SecretError(`${where}: cannot read ${source.file} (${code})`)
    }
    return checkSecretValue(text.replace(/\r?\n$/, ''), where)
  }
  throw new SecretError(`${where}: the env or file name must be a string`)
}
