// Validation of API request bodies. Each failure is a 400 whose message names
// the field and says what is expected.

import type {
  CreateSandboxRequest,
  ExecRequest,
  NetworkPolicy,
  SandboxResources,
  SignalName,
  SpawnRequest,
} from 'isorun'
import type { RunnerConfig } from './config.js'
import { SIGNALS } from './processes.js'
import { SandboxError, type PolicyRequest } from './sandboxes.js'

function bad(message: string, code = 'invalid-request'): SandboxError {
  return new SandboxError(400, code, message)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function onlyFields(body: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key))
      throw bad(`${what}: unknown field "${key}"; expected ${allowed.join(', ')}`)
  }
}

function stringMap(value: unknown, field: string): Record<string, string> | undefined {
  if (value === undefined) return undefined
  if (!isObject(value)) throw bad(`${field} must be an object of string values`)
  for (const [k, v] of Object.entries(value)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw bad(`${field}: "${k}" is not a valid environment variable name`)
    if (typeof v !== 'string') throw bad(`${field}.${k} must be a string`)
  }
  return value as Record<string, string>
}

function positive(value: unknown, field: string, max: number): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max)
    throw bad(`${field} must be a number above 0 and at most ${max}`)
  return value
}

/** `networkProfile` xor `network`; neither means the operator's default profile. */
export function policyRequestOf(
  body: Record<string, unknown>,
  defaultProfile: string | undefined,
): PolicyRequest {
  const { networkProfile, network } = body
  if (networkProfile !== undefined && network !== undefined) {
    throw bad(
      'networkProfile and network are mutually exclusive: give a profile name or an explicit { allow, deny }, not both',
      'conflicting-network',
    )
  }
  if (network !== undefined) {
    if (!isObject(network))
      throw bad('network must be an object such as { "allow": ["pypi.org"] }', 'invalid-network')
    return { network: network as NetworkPolicy }
  }
  if (networkProfile !== undefined) {
    if (typeof networkProfile !== 'string' || networkProfile === '')
      throw bad('networkProfile must be a profile name')
    return { networkProfile }
  }
  if (defaultProfile === undefined) throw bad('give networkProfile or network')
  return { networkProfile: defaultProfile }
}

const IMAGE_REF = /^[a-z0-9][a-z0-9._\-/:@]*$/i

export function parseCreateRequest(
  body: unknown,
  config: RunnerConfig,
): { request: CreateSandboxRequest; policy: PolicyRequest } {
  if (!isObject(body)) throw bad('the body must be a JSON object with at least "image"')
  onlyFields(
    body,
    ['image', 'networkProfile', 'network', 'env', 'resources', 'timeoutMs', 'secrets'],
    'POST /v1/sandboxes',
  )
  const policy = policyRequestOf(body, config.defaultProfile)
  if (typeof body.image !== 'string' || !IMAGE_REF.test(body.image) || body.image.length > 512) {
    throw bad('image must be an image reference such as "python:3.12-slim"')
  }
  let resources: SandboxResources | undefined
  if (body.resources !== undefined) {
    if (!isObject(body.resources))
      throw bad('resources must be an object with memoryMb, cpus and pids')
    onlyFields(body.resources, ['memoryMb', 'cpus', 'pids'], 'resources')
    const memoryMb = positive(body.resources.memoryMb, 'resources.memoryMb', 1024 * 1024)
    const cpus = positive(body.resources.cpus, 'resources.cpus', 1024)
    const pids = positive(body.resources.pids, 'resources.pids', 1_000_000)
    if (memoryMb !== undefined && memoryMb < 6) throw bad('resources.memoryMb must be at least 6')
    if (pids !== undefined && !Number.isInteger(pids))
      throw bad('resources.pids must be an integer')
    resources = {
      ...(memoryMb ? { memoryMb } : {}),
      ...(cpus ? { cpus } : {}),
      ...(pids ? { pids } : {}),
    }
  }
  const timeoutMs = positive(body.timeoutMs, 'timeoutMs', config.maxTimeoutMs)
  const env = stringMap(body.env, 'env')
  const secrets = secretNames(body.secrets, config, env)
  return {
    request: {
      image: body.image,
      ...(env ? { env } : {}),
      ...(secrets.length > 0 ? { secrets } : {}),
      ...(resources ? { resources } : {}),
      ...(timeoutMs ? { timeoutMs } : {}),
    },
    policy,
  }
}

/** Names of operator-defined secrets; unknown names are a 400 that lists the known ones. */
function secretNames(
  value: unknown,
  config: RunnerConfig,
  env: Record<string, string> | undefined,
): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw bad('secrets must be a list of secret names, e.g. ["anthropic"]')
  const names = [...new Set(value as string[])]
  const known = config.secrets.map((s) => s.name)
  const unknown = names.filter((n) => !known.includes(n))
  if (unknown.length > 0)
    throw bad(
      `unknown secret${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => JSON.stringify(n)).join(', ')}; ${
        known.length > 0
          ? `known secrets: ${known.join(', ')}`
          : 'the runner has no secrets (set ISORUN_SECRETS_FILE)'
      }`,
      'unknown-secret',
    )
  for (const name of names) {
    const variable = config.secrets.find((s) => s.name === name)?.env
    if (variable !== undefined && env?.[variable] !== undefined)
      throw bad(`env.${variable} is where secret ${name} puts its placeholder; remove one of them`)
  }
  return names
}

export function parseExecRequest(body: unknown): ExecRequest {
  return parseCommand(body, ['cmd', 'env', 'cwd', 'timeoutMs'], 'exec')
}

export function parseSpawnRequest(body: unknown): SpawnRequest {
  const request = parseCommand(body, ['cmd', 'env', 'cwd', 'timeoutMs', 'stdin'], 'spawn')
  const { stdin } = body as Record<string, unknown>
  if (stdin !== undefined && typeof stdin !== 'boolean') throw bad('stdin must be true or false')
  return { ...request, ...(stdin === true ? { stdin } : {}) }
}

function parseCommand(body: unknown, fields: readonly string[], what: string): ExecRequest {
  if (!isObject(body)) throw bad('the body must be a JSON object with "cmd"')
  onlyFields(body, fields, what)
  const { cmd } = body
  const okArray = Array.isArray(cmd) && cmd.length > 0 && cmd.every((c) => typeof c === 'string')
  if (!(typeof cmd === 'string' && cmd !== '') && !okArray)
    throw bad('cmd must be a non-empty string (run with /bin/sh -c) or an array of strings')
  if (body.cwd !== undefined && (typeof body.cwd !== 'string' || !body.cwd.startsWith('/')))
    throw bad('cwd must be an absolute path')
  const env = stringMap(body.env, 'env')
  const timeoutMs = positive(body.timeoutMs, 'timeoutMs', 24 * 3600_000)
  return {
    cmd: cmd as string | string[],
    ...(env ? { env } : {}),
    ...(typeof body.cwd === 'string' ? { cwd: body.cwd } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
  }
}

export function parseKillRequest(body: unknown): SignalName {
  if (!isObject(body)) throw bad('the body must be a JSON object such as { "signal": "SIGTERM" }')
  onlyFields(body, ['signal'], 'kill')
  const { signal = 'SIGKILL' } = body
  if (!(SIGNALS as readonly unknown[]).includes(signal))
    throw bad(`signal must be one of ${SIGNALS.join(', ')}`, 'invalid-signal')
  return signal as SignalName
}

export function parseUpdateNetwork(body: unknown): PolicyRequest {
  if (!isObject(body))
    throw bad('the body must be { "networkProfile": NAME } or { "network": { allow, deny } }')
  onlyFields(body, ['networkProfile', 'network'], 'PUT /v1/sandboxes/:id/network')
  return policyRequestOf(body, undefined)
}
