// Runner settings, from environment variables (documented in docs/runner-api.md's
// operator table). Every value is checked here, at start, with a message that
// names the variable.

import type { WebhookConfig } from './approval-webhook.js'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'
import { parseSpecialAllowances, PolicyError, splitAuthority } from '../policy/index.js'
import { ProfileError } from '../profiles/index.js'
import { SecretError } from '../secrets/binding.js'
import { loadSecretsFile, type OperatorSecret } from '../secrets/config.js'
import { pemCertificates } from '../tls/pem.js'

export interface SandboxDefaults {
  readonly memoryMb: number
  readonly cpus: number
  readonly pids: number
  /** 0 means no timeout. */
  readonly timeoutMs: number
}

export interface RunnerConfig {
  readonly listen: { readonly host: string; readonly port: number }
  /** Undefined only when authentication is explicitly disabled (ISORUN_AUTH=none). */
  readonly apiKey: string | undefined
  /** Where the generated API key came from, for the start-up message. */
  readonly apiKeySource: 'env' | 'generated' | 'file' | 'disabled'
  readonly apiKeyFile: string | undefined
  readonly profileDirs: readonly string[]
  readonly proxyImage: string
  readonly egressNetwork: string
  /** Sandbox networks are carved out of this IPv4 block. */
  readonly subnetPool: string
  readonly subnetPrefix: number
  /** Special-purpose ranges the proxies may reach (CIDRs or groups). */
  readonly allowPrivate: readonly string[]
  /** `name:ip` entries added to every proxy's /etc/hosts. */
  readonly proxyExtraHosts: readonly string[]
  readonly logAllowed: boolean
  /** How long the proxies keep the addresses they look up: a floor and a ceiling on the TTL, seconds. */
  readonly proxyDnsTtl: { readonly minSeconds: number; readonly maxSeconds: number }
  /** The profile of a sandbox created without networkProfile or network. */
  readonly defaultProfile: string
  readonly defaults: SandboxDefaults
  readonly maxTimeoutMs: number
  readonly pullImages: boolean
  /** The largest file the file API reads or writes. */
  readonly maxFileBytes: number
  /**
   * This runner's identity, stable across restarts (ISORUN_RUNNER_ID, or generated once and
   * kept in the state directory). Every object it creates carries it, so that a restarted
   * runner knows its own leftovers from those of other runners on the same engine.
   */
  readonly runnerId: string
  /** Where the generated API key and each sandbox's CA are kept. */
  readonly stateDir: string
  /** ISORUN_SECRETS_FILE: secrets sandboxes may be created with, values resolved. */
  readonly secrets: readonly OperatorSecret[]
  /** ISORUN_UPSTREAM_CA: PEM text of CAs the proxies trust upstream besides the system roots. */
  readonly upstreamCa: string | undefined
  /** ISORUN_APPROVAL_WEBHOOK_URL and _SECRET: where pending approvals are POSTed, signed. */
  readonly approvalWebhook?: WebhookConfig
}

export class ConfigError extends Error {}

function int(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n < min || n > max)
    throw new ConfigError(`${name}="${raw}" must be a number from ${min} to ${max}`)
  return n
}

function bool(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = (env[name] ?? '').toLowerCase()
  if (raw === '') return fallback
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true
  if (['0', 'false', 'no', 'off'].includes(raw)) return false
  throw new ConfigError(`${name}="${env[name]}" must be true or false`)
}

function list(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? '')
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

function parseListen(raw: string): { host: string; port: number } {
  const authority = splitAuthority(raw)
  if (authority?.port === undefined)
    throw new ConfigError(`ISORUN_LISTEN="${raw}" must be host:port, e.g. 127.0.0.1:8080`)
  return { host: authority.host, port: authority.port }
}

/** Where a generated API key is kept: ISORUN_STATE_DIR, /var/lib/isorun if it exists, else ~/.isorun. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ISORUN_STATE_DIR) return env.ISORUN_STATE_DIR
  return existsSync('/var/lib/isorun') ? '/var/lib/isorun' : join(homedir(), '.isorun')
}

/**
 * The API key: ISORUN_API_KEY, or one generated on first start and kept in the
 * state directory, so that `docker compose up` works out of the box without a
 * well-known default key. ISORUN_AUTH=none disables authentication (local development only).
 */
function apiKey(
  env: NodeJS.ProcessEnv,
): Pick<RunnerConfig, 'apiKey' | 'apiKeySource' | 'apiKeyFile'> {
  if ((env.ISORUN_AUTH ?? '').toLowerCase() === 'none')
    return { apiKey: undefined, apiKeySource: 'disabled', apiKeyFile: undefined }
  if (env.ISORUN_API_KEY) {
    if (env.ISORUN_API_KEY.length < 16)
      throw new ConfigError(
        'ISORUN_API_KEY must be at least 16 characters (e.g. openssl rand -hex 32)',
      )
    return { apiKey: env.ISORUN_API_KEY, apiKeySource: 'env', apiKeyFile: undefined }
  }
  const dir = stateDir(env)
  const file = generatedKeyFile(env)
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim()
    if (key.length >= 16) return { apiKey: key, apiKeySource: 'file', apiKeyFile: file }
  }
  const key = randomBytes(32).toString('hex')
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    writeFileSync(file, `${key}\n`, { mode: 0o600 })
  } catch (err) {
    throw new ConfigError(
      `ISORUN_API_KEY is not set and the generated key cannot be saved in ${dir} (${(err as Error).message}); set ISORUN_API_KEY or ISORUN_STATE_DIR`,
    )
  }
  return { apiKey: key, apiKeySource: 'generated', apiKeyFile: file }
}

export function generatedKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(stateDir(env), 'api-key')
}

/**
 * ISORUN_RUNNER_ID, or an id generated on first start and kept in the state directory.
 * Two runners must not share one (nor a state directory): each takes the other's
 * half-made sandboxes for its own dead predecessor's.
 */
const RUNNER_ID = /^[A-Za-z0-9_.-]{1,64}$/

function runnerId(env: NodeJS.ProcessEnv): string {
  const given = env.ISORUN_RUNNER_ID
  if (given !== undefined && given !== '') {
    if (!RUNNER_ID.test(given))
      throw new ConfigError('ISORUN_RUNNER_ID must be 1-64 letters, digits, "_", "." or "-"')
    return given
  }
  const dir = stateDir(env)
  const file = join(dir, 'runner-id')
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim()
    if (RUNNER_ID.test(id)) return id
  }
  const id = randomBytes(8).toString('hex')
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    writeFileSync(file, `${id}\n`, { mode: 0o600 })
  } catch (err) {
    throw new ConfigError(
      `the runner id cannot be saved in ${dir} (${(err as Error).message}); set ISORUN_STATE_DIR to a writable directory, or ISORUN_RUNNER_ID`,
    )
  }
  return id
}

function secrets(env: NodeJS.ProcessEnv): OperatorSecret[] {
  const file = env.ISORUN_SECRETS_FILE
  if (!file) return []
  try {
    return loadSecretsFile(file, env)
  } catch (err) {
    if (err instanceof SecretError || err instanceof ProfileError)
      throw new ConfigError(`ISORUN_SECRETS_FILE: ${err.message}`)
    throw err
  }
}

function upstreamCa(env: NodeJS.ProcessEnv): string | undefined {
  const file = env.ISORUN_UPSTREAM_CA
  if (!file) return undefined
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(
      `ISORUN_UPSTREAM_CA=${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    )
  }
  if (pemCertificates(text).length === 0)
    throw new ConfigError(`ISORUN_UPSTREAM_CA=${file} holds no PEM certificate`)
  return text
}

/** The approval webhook: a URL, a secret of at least 16 characters, and the runner's public URL. */
function approvalWebhook(
  env: NodeJS.ProcessEnv,
  listen: { host: string; port: number },
): WebhookConfig | undefined {
  const url = env.ISORUN_APPROVAL_WEBHOOK_URL
  if (!url) return undefined
  if (!/^https?:\/\/[^\s]+$/.test(url))
    throw new ConfigError(`ISORUN_APPROVAL_WEBHOOK_URL="${url}" must be an http:// or https:// URL`)
  const secret = env.ISORUN_APPROVAL_WEBHOOK_SECRET ?? ''
  if (secret.length < 16)
    throw new ConfigError(
      'ISORUN_APPROVAL_WEBHOOK_SECRET must be set, at least 16 characters (e.g. openssl rand -hex 32): the webhook is signed with it',
    )
  const publicUrl = env.ISORUN_PUBLIC_URL || `http://${listen.host}:${listen.port}`
  return { url, secret, publicUrl }
}

export function loadRunnerConfig(env: NodeJS.ProcessEnv = process.env): RunnerConfig {
  const allowPrivate = list(env, 'ISORUN_ALLOW_PRIVATE')
  try {
    parseSpecialAllowances(allowPrivate)
  } catch (err) {
    if (err instanceof PolicyError) throw new ConfigError(`ISORUN_ALLOW_PRIVATE: ${err.message}`)
    throw err
  }
  const proxyExtraHosts = list(env, 'ISORUN_PROXY_EXTRA_HOSTS')
  for (const entry of proxyExtraHosts) {
    if (!/^[A-Za-z0-9.-]+:[0-9a-fA-F.:]+$/.test(entry))
      throw new ConfigError(`ISORUN_PROXY_EXTRA_HOSTS entry "${entry}" must be name:ip`)
  }
  const subnetPool = env.ISORUN_SUBNET_POOL || '172.29.0.0/16'
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(subnetPool))
    throw new ConfigError(`ISORUN_SUBNET_POOL="${subnetPool}" must be an IPv4 CIDR block`)
  const defaultTimeout = int(env, 'ISORUN_DEFAULT_TIMEOUT_MS', 60 * 60_000, 0, 7 * 24 * 3600_000)
  const listen = parseListen(env.ISORUN_LISTEN || '127.0.0.1:8080')
  const webhook = approvalWebhook(env, listen)
  const proxyDnsTtl = {
    minSeconds: int(env, 'ISORUN_PROXY_DNS_TTL_MIN', 5, 0, 86_400),
    maxSeconds: int(env, 'ISORUN_PROXY_DNS_TTL_MAX', 300, 0, 86_400),
  }
  if (proxyDnsTtl.minSeconds > proxyDnsTtl.maxSeconds)
    throw new ConfigError('ISORUN_PROXY_DNS_TTL_MIN must not be above ISORUN_PROXY_DNS_TTL_MAX')
  return {
    listen,
    ...apiKey(env),
    profileDirs: (env.ISORUN_PROFILES_DIR ?? '').split(delimiter).filter((d) => d !== ''),
    proxyImage: env.ISORUN_PROXY_IMAGE || 'isorun:local',
    egressNetwork: env.ISORUN_EGRESS_NETWORK || 'isorun-egress',
    subnetPool,
    subnetPrefix: int(env, 'ISORUN_SUBNET_PREFIX', 28, 16, 29),
    allowPrivate,
    proxyExtraHosts,
    logAllowed: bool(env, 'ISORUN_LOG_ALLOWED', true),
    proxyDnsTtl,
    defaultProfile: env.ISORUN_DEFAULT_PROFILE || 'locked-down',
    defaults: {
      memoryMb: int(env, 'ISORUN_DEFAULT_MEMORY_MB', 1024, 16, 1024 * 1024),
      cpus: int(env, 'ISORUN_DEFAULT_CPUS', 1, 0.01, 1024),
      pids: int(env, 'ISORUN_DEFAULT_PIDS', 512, 16, 1_000_000),
      timeoutMs: defaultTimeout,
    },
    maxTimeoutMs: int(env, 'ISORUN_MAX_TIMEOUT_MS', 24 * 3600_000, 1000, 30 * 24 * 3600_000),
    pullImages: bool(env, 'ISORUN_PULL_IMAGES', true),
    maxFileBytes: int(env, 'ISORUN_MAX_FILE_BYTES', 1024 ** 3, 1, 2 ** 40),
    runnerId: runnerId(env),
    stateDir: stateDir(env),
    secrets: secrets(env),
    upstreamCa: upstreamCa(env),
    ...(webhook ? { approvalWebhook: webhook } : {}),
  }
}
