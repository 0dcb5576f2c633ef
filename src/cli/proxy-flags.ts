// `isorun proxy`'s command line, read into what the command needs: a pure
// function of argv and the environment (no file, network or clock), so every
// flag and every usage error is testable on its own.

import type { OperatorSettings } from '../policy/index.js'
import { isIP } from 'node:net'
import { splitAuthority } from '../policy/index.js'
import type { ListenAddress, ProxyListeners } from '../proxy/proxy.js'
import {
  DEFAULT_DNS_TTL,
  parseResolveOverride,
  type DnsSettings,
  type ResolveOverrides,
} from '../proxy/resolver.js'
import { parseArgs, PROFILES_DIR_OPTION, splitList, withUsage } from './args.js'
import {
  INTERCEPTION_OPTIONS,
  INTERCEPTION_USAGE,
  type InterceptionFlags,
} from './interception-flags.js'
import { UsageError } from './errors.js'

export const PROXY_USAGE = `usage: isorun proxy (--profile NAME | --allow RULES [--deny RULES] | --wait-for-policy) [options]

policy (one of):
  --profile NAME           a profile from the catalogue (kept live: edits to its file apply to new connections)
  --allow RULES            allowed rules; repeatable, each one rule or a comma-separated list
  --deny RULES             denied rules (with --deny alone, everything else is allowed)
  --wait-for-policy        refuse everything until a policy arrives through PUT /policy on the admin API

listeners (host:port each; default --http 127.0.0.1:3128 --socks 127.0.0.1:1080):
  --http   HTTP proxy (absolute-form and CONNECT)     --socks  SOCKS5 (CONNECT only)
  --tls    transparent TLS (DNS-steered 443)           --plain  transparent HTTP (DNS-steered 80)
  --dns    DNS (UDP and TCP; never forwards)           --admin  admin API (token required; host "egress" =
                                                                the address no other listener uses)

options:
  --resolve NAME=IP        static resolution before the system resolver; repeatable
  --allow-private RANGES   special-purpose ranges upstreams may be in (CIDR or group: private, loopback, …)
  --block RANGES           CIDR blocks never reached, whatever the policy or --allow-private says
  --upstream-proxy URL     send all upstream traffic through this HTTP proxy
  --upstream-dns ADDR[:PORT]   DNS server for the proxy's own lookups; repeatable (default: /etc/resolv.conf)
  --dns-ttl-min SECONDS    keep looked-up addresses at least this long (default ${DEFAULT_DNS_TTL.minSeconds})
  --dns-ttl-max SECONDS    and at most this long, whatever the TTL (default ${DEFAULT_DNS_TTL.maxSeconds})
  --sandbox-id ID          tag for every log line
  --log-allowed / --no-log-allowed   log allowed decisions too (default: yes)
  --admin-token TOKEN      admin API token (or ISORUN_ADMIN_TOKEN; generated and printed if unset)
  --dns-answer IP          address DNS answers carry (default: the --dns address)
  --profiles-dir DIR       more profile directories; repeatable

${INTERCEPTION_USAGE}`

const OPTIONS = {
  profile: { type: 'string' },
  allow: { type: 'string', multiple: true },
  deny: { type: 'string', multiple: true },
  'wait-for-policy': { type: 'boolean' },
  http: { type: 'string' },
  socks: { type: 'string' },
  tls: { type: 'string' },
  plain: { type: 'string' },
  dns: { type: 'string' },
  admin: { type: 'string' },
  resolve: { type: 'string', multiple: true },
  'allow-private': { type: 'string', multiple: true },
  block: { type: 'string', multiple: true },
  'upstream-proxy': { type: 'string' },
  'upstream-dns': { type: 'string', multiple: true },
  'dns-ttl-min': { type: 'string' },
  'dns-ttl-max': { type: 'string' },
  'sandbox-id': { type: 'string' },
  'log-allowed': { type: 'boolean' },
  'no-log-allowed': { type: 'boolean' },
  'admin-token': { type: 'string' },
  'dns-answer': { type: 'string' },
  help: { type: 'boolean' },
  ...INTERCEPTION_OPTIONS,
  ...PROFILES_DIR_OPTION,
} as const

/** Where the proxy's first policy comes from. */
export type PolicyFlag =
  | { readonly kind: 'profile'; readonly name: string }
  | { readonly kind: 'rules'; readonly allow: readonly string[]; readonly deny: readonly string[] }
  | { readonly kind: 'wait' }

/** The flags of `isorun proxy`, checked and with their defaults. */
export interface ProxyFlags {
  readonly policy: PolicyFlag
  readonly operator: OperatorSettings
  /** Listeners; `admin.host` may still be `egress`, which only the running machine can resolve. */
  readonly listen: ProxyListeners
  readonly resolveOverrides: ResolveOverrides
  /** The proxy's own lookups: --upstream-dns and the cache's TTL floor and ceiling. */
  readonly dns: DnsSettings
  readonly parentProxy?: URL
  readonly sandboxId?: string
  readonly logAllowed: boolean
  /** From --admin-token, else ISORUN_ADMIN_TOKEN. */
  readonly adminToken?: string
  readonly dnsAnswerAddress?: string
  readonly profileDirs?: readonly string[]
  /** The interception flags as given; interceptionFromFlags() reads their files. */
  readonly interception: InterceptionFlags
}

/** The default listeners when no listener flag (other than --admin) is given. */
const DEFAULT_LISTENERS = {
  http: { host: '127.0.0.1', port: 3128 },
  socks: { host: '127.0.0.1', port: 1080 },
} as const

/** Reads `isorun proxy`'s arguments; `help` when --help was asked for. Throws UsageError. */
export function parseProxyFlags(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): ProxyFlags | 'help' {
  const { values, positionals } = withUsage(PROXY_USAGE, () =>
    parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true }),
  )
  if (values.help) return 'help'
  if (positionals.length > 0)
    throw new UsageError(`unexpected argument "${positionals[0]}"`, PROXY_USAGE)

  const named: ProxyListeners = {
    http: parseListen('http', values.http),
    socks: parseListen('socks', values.socks),
    tls: parseListen('tls', values.tls),
    plain: parseListen('plain', values.plain),
    dns: parseListen('dns', values.dns),
    admin: parseListen('admin', values.admin),
  }
  const anyListener = Object.entries(named).some(([kind, a]) => kind !== 'admin' && a)
  const parentProxy = parseUpstreamProxy(values['upstream-proxy'])
  const adminToken = values['admin-token'] ?? env.ISORUN_ADMIN_TOKEN
  return {
    policy: policyFlag(values),
    operator: {
      allowSpecial: splitList(values['allow-private']),
      blockAlways: splitList(values.block),
    },
    listen: anyListener ? named : { ...named, ...DEFAULT_LISTENERS },
    resolveOverrides: parseResolveOverrides(values.resolve),
    dns: dnsSettings(values),
    ...(parentProxy ? { parentProxy } : {}),
    ...(values['sandbox-id'] ? { sandboxId: values['sandbox-id'] } : {}),
    logAllowed: values['no-log-allowed'] ? false : (values['log-allowed'] ?? true),
    ...(adminToken ? { adminToken } : {}),
    ...(values['dns-answer'] ? { dnsAnswerAddress: values['dns-answer'] } : {}),
    ...(values['profiles-dir'] ? { profileDirs: values['profiles-dir'] } : {}),
    interception: {
      'ca-cert': values['ca-cert'],
      'ca-key': values['ca-key'],
      'ca-dir': values['ca-dir'],
      secrets: values.secrets,
      'upstream-ca': values['upstream-ca'],
    },
  }
}

function policyFlag(values: {
  profile?: string
  allow?: string[]
  deny?: string[]
  'wait-for-policy'?: boolean
}): PolicyFlag {
  const allow = splitList(values.allow)
  const deny = splitList(values.deny)
  const given = [
    values.profile !== undefined,
    allow.length + deny.length > 0,
    values['wait-for-policy'] === true,
  ].filter(Boolean).length
  if (given !== 1)
    throw new UsageError(
      'give exactly one policy: --profile NAME, --allow/--deny rules, or --wait-for-policy',
      PROXY_USAGE,
    )
  if (values.profile !== undefined) return { kind: 'profile', name: values.profile }
  if (values['wait-for-policy']) return { kind: 'wait' }
  return { kind: 'rules', allow, deny }
}

function dnsSettings(values: {
  'upstream-dns'?: string[]
  'dns-ttl-min'?: string
  'dns-ttl-max'?: string
}): DnsSettings {
  const seconds = (flag: 'dns-ttl-min' | 'dns-ttl-max', fallback: number): number => {
    const text = values[flag]
    if (text === undefined) return fallback
    const n = Number(text)
    if (!/^\d+$/.test(text) || n > 86_400)
      throw new UsageError(`--${flag} "${text}": write whole seconds from 0 to 86400`)
    return n
  }
  const minTtlSeconds = seconds('dns-ttl-min', DEFAULT_DNS_TTL.minSeconds)
  const maxTtlSeconds = seconds('dns-ttl-max', DEFAULT_DNS_TTL.maxSeconds)
  if (minTtlSeconds > maxTtlSeconds)
    throw new UsageError(
      `--dns-ttl-min (${minTtlSeconds}) is above --dns-ttl-max (${maxTtlSeconds})`,
    )
  const servers = values['upstream-dns']
  for (const server of servers ?? []) {
    const authority = splitAuthority(server)
    if (!authority || !isIP(authority.host))
      throw new UsageError(`--upstream-dns "${server}": write an IP address, with :port if not 53`)
  }
  return { minTtlSeconds, maxTtlSeconds, ...(servers ? { servers } : {}) }
}

function parseListen(flag: string, value: string | undefined): ListenAddress | undefined {
  if (value === undefined) return undefined
  const authority = splitAuthority(value)
  if (authority?.port === undefined)
    throw new UsageError(`--${flag} "${value}": write host:port, e.g. 127.0.0.1:3128`)
  return { host: authority.host, port: authority.port }
}

function parseResolveOverrides(entries: readonly string[] | undefined): Map<string, string[]> {
  const overrides = new Map<string, string[]>()
  for (const entry of entries ?? []) {
    try {
      const [name, address] = parseResolveOverride(entry)
      overrides.set(name, [...(overrides.get(name) ?? []), address])
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  }
  return overrides
}

function parseUpstreamProxy(value: string | undefined): URL | undefined {
  if (value === undefined) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new UsageError(`--upstream-proxy "${value}" is not a URL such as http://proxy.corp:3128`)
  }
  if (url.protocol !== 'http:')
    throw new UsageError('--upstream-proxy must be an http:// proxy URL')
  return url
}
