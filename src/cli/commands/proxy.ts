// `isorun proxy`: the egress proxy, standalone or as a sandbox's sidecar.

import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import {
  compilePolicy,
  PolicyError,
  type Mode,
  type OperatorSettings,
  type PolicySpec,
  joinAuthority,
  splitAuthority,
} from '../../policy/index.js'
import type { ProfileCatalogue } from '../../profiles/index.js'
import { startProxy, type ListenAddress, type ProxyListeners } from '../../proxy/proxy.js'
import { DEFAULT_DNS_TTL, parseResolveOverride, type DnsSettings } from '../../proxy/resolver.js'
import { parseArgs, PROFILES_DIR_OPTION, splitList, withUsage } from '../args.js'
import {
  INTERCEPTION_OPTIONS,
  INTERCEPTION_USAGE,
  interceptionFromFlags,
} from '../interception-flags.js'
import { UsageError } from '../errors.js'

const USAGE = `usage: isorun proxy (--profile NAME | --allow RULES [--deny RULES] | --wait-for-policy) [options]

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

/**
 * `egress` as a host: the first non-loopback IPv4 address of this machine that
 * no other listener uses. A sidecar attached to a sandbox network and an
 * egress network uses it to put its admin API on the egress side only.
 */
function egressAddress(exclude: readonly string[]): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family === 'IPv4' && !a.internal && !exclude.includes(a.address)) return a.address
    }
  }
  throw new UsageError(
    '--admin egress:PORT: this machine has no IPv4 address besides the ones the other listeners use',
  )
}

/** The proxy's own lookups: --upstream-dns and the cache's TTL floor and ceiling. */
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

export async function proxyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = withUsage(USAGE, () =>
    parseArgs({
      args: argv,
      options: {
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
      },
      allowPositionals: true,
    }),
  )
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`, USAGE)

  const allow = splitList(values.allow)
  const deny = splitList(values.deny)
  const sources = [
    values.profile !== undefined,
    allow.length + deny.length > 0,
    values['wait-for-policy'] === true,
  ].filter(Boolean).length
  if (sources !== 1)
    throw new UsageError(
      'give exactly one policy: --profile NAME, --allow/--deny rules, or --wait-for-policy',
      USAGE,
    )

  const operator: OperatorSettings = {
    allowSpecial: splitList(values['allow-private']),
    blockAlways: splitList(values.block),
  }
  // The profiles (and their YAML parser) are loaded for --profile, or when the admin API is
  // first asked for a profile by name; a sidecar that is sent resolved specs never loads them.
  const profiles =
    values.profile !== undefined ? await import('../../profiles/index.js') : undefined
  let catalogue: ProfileCatalogue | undefined
  let spec: PolicySpec
  if (values.profile !== undefined && profiles) {
    const { openCatalogue, unknownProfile } = await import('../catalogue.js')
    catalogue = openCatalogue(values['profiles-dir'])
    const profile = catalogue.get(values.profile)
    if (!profile) throw unknownProfile(values.profile, catalogue)
    spec = profiles.policySpecOf(profile)
  } else if (values['wait-for-policy']) {
    spec = { name: 'pending', mode: 'deny-all', allow: [], deny: [] }
  } else {
    const mode: Mode = allow.length > 0 ? 'allow-list' : 'allow-all'
    spec = {
      name: 'custom',
      mode,
      allow: allow.map((rule) => ({ rule, from: 'custom' })),
      deny: deny.map((rule) => ({ rule, from: 'custom' })),
    }
  }
  let policy
  try {
    policy = compilePolicy(spec, operator)
  } catch (err) {
    if (err instanceof PolicyError) throw new UsageError(err.message)
    throw err
  }

  const overrides = new Map<string, string[]>()
  for (const entry of values.resolve ?? []) {
    try {
      const [name, address] = parseResolveOverride(entry)
      overrides.set(name, [...(overrides.get(name) ?? []), address])
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  }
  let parentProxy: URL | undefined
  if (values['upstream-proxy'] !== undefined) {
    try {
      parentProxy = new URL(values['upstream-proxy'])
    } catch {
      throw new UsageError(
        `--upstream-proxy "${values['upstream-proxy']}" is not a URL such as http://proxy.corp:3128`,
      )
    }
    if (parentProxy.protocol !== 'http:')
      throw new UsageError('--upstream-proxy must be an http:// proxy URL')
  }

  const dns = dnsSettings(values)

  const named: ProxyListeners = {
    http: parseListen('http', values.http),
    socks: parseListen('socks', values.socks),
    tls: parseListen('tls', values.tls),
    plain: parseListen('plain', values.plain),
    dns: parseListen('dns', values.dns),
    admin: parseListen('admin', values.admin),
  }
  const anyListener = Object.values(named).some((a) => a !== undefined && a !== named.admin)
  let listen: ProxyListeners = anyListener
    ? named
    : {
        ...named,
        http: { host: '127.0.0.1', port: 3128 },
        socks: { host: '127.0.0.1', port: 1080 },
      }
  if (listen.admin?.host === 'egress') {
    const others = [listen.http, listen.socks, listen.tls, listen.plain, listen.dns].flatMap((a) =>
      a ? [a.host] : [],
    )
    listen = { ...listen, admin: { host: egressAddress(others), port: listen.admin.port } }
  }

  let adminToken = values['admin-token'] ?? process.env.ISORUN_ADMIN_TOKEN
  if (listen.admin && !adminToken) {
    adminToken = randomBytes(24).toString('base64url')
    process.stderr.write(
      `isorun proxy: admin token (set ISORUN_ADMIN_TOKEN to choose one): ${adminToken}\n`,
    )
  }

  const interception = await interceptionFromFlags(values, (line) =>
    process.stderr.write(`isorun proxy: ${line}\n`),
  )
  let proxy
  try {
    proxy = await startProxy({
      ...(interception ? { interception } : {}),
      policy,
      listen,
      operator,
      catalogue:
        catalogue ??
        (async () => {
          const [{ ProfileCatalogue }, { profileDirsFrom }] = await Promise.all([
            import('../../profiles/index.js'),
            import('../catalogue.js'),
          ])
          return new ProfileCatalogue({ dirs: profileDirsFrom(values['profiles-dir']) })
        }),
      resolveOverrides: overrides,
      dns,
      ...(parentProxy ? { parentProxy } : {}),
      ...(values['sandbox-id'] ? { sandboxId: values['sandbox-id'] } : {}),
      logAllowed: values['no-log-allowed'] ? false : (values['log-allowed'] ?? true),
      ...(adminToken ? { adminToken } : {}),
      ...(values['dns-answer'] ? { dnsAnswerAddress: values['dns-answer'] } : {}),
    })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      throw new UsageError(
        `cannot listen: ${e.message}`,
        'choose another address with the listener flags',
      )
    }
    throw new UsageError(e.message)
  }

  // With --profile, edits to the profile (or anything it includes) apply to new connections.
  if (values.profile !== undefined && catalogue && profiles) {
    const { policySpecOf } = profiles
    const name = values.profile
    catalogue.watch()
    catalogue.on('change', ({ changed }) => {
      const profile = catalogue.get(name)
      if (!changed.includes(name) || !profile) return
      try {
        proxy.context.policy.replace(compilePolicy(policySpecOf(profile), operator))
        proxy.context.log.operational.info(
          { policy: name },
          'profile changed; new connections use the new rules',
        )
      } catch (err) {
        proxy.context.log.operational.warn(
          { policy: name, error: (err as Error).message },
          'profile change refused; keeping the previous rules',
        )
      }
    })
  }

  const shown = Object.entries(proxy.addresses).map(
    ([k, a]) => `${k} ${joinAuthority(a.address, a.port)}`,
  )
  process.stderr.write(
    `isorun proxy: policy ${policy.name} (${policy.mode}); listening: ${shown.join(', ')}\n`,
  )

  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      process.stderr.write(`isorun proxy: ${signal}: draining connections (up to 10 s)\n`)
      catalogue?.close()
      void proxy.close(10_000).then((cut) => {
        process.stderr.write(
          cut === 0
            ? 'isorun proxy: every connection finished; exiting\n'
            : `isorun proxy: drain time up; closed ${cut} connection(s); exiting\n`,
        )
        resolve(0)
      })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}
