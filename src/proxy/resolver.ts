// Names to addresses for upstream connections. Only names the policy allows
// are ever looked up (the callers decide by name first); the addresses found
// are what decide() checks and what the proxy dials, never a second lookup.
//
// In order: an IP literal is its own address; then the operator's overrides
// (--resolve); then the hosts file (so Docker's extra_hosts work); then DNS,
// cached for the answer's TTL (dns-cache.ts). DNS is asked with c-ares, which
// reports TTLs (getaddrinfo does not), at the servers of /etc/resolv.conf: in a
// Docker container that is Docker's embedded DNS at 127.0.0.11. The system
// resolver (getaddrinfo) answers only where c-ares cannot: when no servers are
// configured, and for single-label names (an operator's internal names, which
// its search domains complete); its answers are kept for the floor. A name
// with a dot whose servers refuse or fail is not passed on to it: after a
// failure getaddrinfo tries the search domains, and would find the address of
// a name (allowed.test.corp.example) that no decision saw.

import { lookup } from 'node:dns/promises'
import { Resolver as CaresResolver } from 'node:dns/promises'
import { canonicalHost, type CanonicalHost } from '../policy/index.js'
import { DnsCache, NameNotFound, type DnsAnswer } from './dns-cache.js'
import { HostsFile } from './hosts-file.js'
import { UpstreamError } from './upstream.js'

/** Static name → addresses overrides (`--resolve name=ip`), consulted before the system resolver. */
export type ResolveOverrides = ReadonlyMap<string, readonly string[]>

export function parseResolveOverride(text: string): [string, string] {
  const eq = text.indexOf('=')
  if (eq <= 0 || eq === text.length - 1)
    throw new Error(`--resolve "${text}": write name=address, e.g. pypi.org=127.0.0.1`)
  const name = canonicalHost(text.slice(0, eq))
  const address = canonicalHost(text.slice(eq + 1))
  if (name.kind !== 'name')
    throw new Error(`--resolve "${text}": the left side must be a host name`)
  if (address.kind !== 'ip')
    throw new Error(`--resolve "${text}": the right side must be an IP address`)
  return [name.name, address.text]
}

export interface DnsSettings {
  /** DNS servers (`address` or `address:port`); the system's (/etc/resolv.conf) by default. */
  readonly servers?: readonly string[]
  /** Cached answers are kept at least this long, whatever their TTL (seconds). */
  readonly minTtlSeconds?: number
  /** And at most this long (seconds). */
  readonly maxTtlSeconds?: number
  /** The hosts file; /etc/hosts by default. */
  readonly hostsFile?: string
}

export const DEFAULT_DNS_TTL = { minSeconds: 5, maxSeconds: 300 } as const

export interface ResolverOptions extends DnsSettings {
  readonly overrides?: ResolveOverrides
  /** How long one lookup may take. */
  readonly timeoutMs?: number
  /** The clock, in milliseconds (tests move it instead of waiting). */
  readonly now?: () => number
  /** The system resolver; getaddrinfo by default (tests see what reaches it). */
  readonly systemLookup?: (name: string) => Promise<DnsAnswer>
}

/** c-ares errors that say the name has no addresses, as opposed to a server that failed. */
const NO_SUCH_NAME = new Set(['ENOTFOUND', 'ENODATA'])

export class Resolver {
  private readonly overrides: ResolveOverrides
  private readonly hosts: HostsFile
  private readonly cache: DnsCache
  private readonly dns: CaresResolver | undefined
  private readonly timeoutMs: number
  private readonly systemLookup: (name: string) => Promise<DnsAnswer>

  constructor(options: ResolverOptions = {}) {
    this.overrides = options.overrides ?? new Map()
    this.systemLookup = options.systemLookup ?? getaddrinfo
    this.timeoutMs = options.timeoutMs ?? 5000
    this.hosts = new HostsFile(options.hostsFile ?? '/etc/hosts', options.now)
    // Two tries, the second after twice the wait: within timeoutMs in all.
    const dns = new CaresResolver({ timeout: Math.floor(this.timeoutMs / 3), tries: 2 })
    if (options.servers) dns.setServers([...options.servers])
    this.dns = dns.getServers().length > 0 ? dns : undefined
    this.cache = new DnsCache((name) => this.query(name), {
      minTtlSeconds: options.minTtlSeconds ?? DEFAULT_DNS_TTL.minSeconds,
      maxTtlSeconds: options.maxTtlSeconds ?? DEFAULT_DNS_TTL.maxSeconds,
      ...(options.now ? { now: options.now } : {}),
    })
  }

  /**
   * Addresses known without asking a DNS server: an IP literal's own, a name's
   * overrides or hosts-file entry, or a cached answer that is still fresh.
   * Undefined when resolving would need a lookup.
   */
  resolveLocal(host: CanonicalHost): string[] | undefined {
    if (host.kind === 'ip') return [host.text]
    const override = this.overrides.get(host.name)
    if (override) return [...override]
    return this.hosts.lookup(host.name) ?? this.cache.fresh(host.name)
  }

  /** Addresses for a canonical host, IPv4 first. Rejects with an UpstreamError. */
  resolve(host: CanonicalHost): Promise<string[]> {
    if (host.kind === 'ip') return Promise.resolve([host.text])
    const local = this.resolveLocal(host)
    return local ? Promise.resolve(local) : this.cache.lookup(host.name)
  }

  /** One lookup, within timeoutMs. */
  private async query(name: string): Promise<DnsAnswer> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new UpstreamError(`resolving ${name} timed out`, 'timeout')),
        this.timeoutMs,
      )
    })
    try {
      return await Promise.race([this.ask(name), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private async ask(name: string): Promise<DnsAnswer> {
    // A single label may be completed by the search domains only the system resolver applies.
    if (!this.dns || !name.includes('.')) return this.systemLookup(name)
    const [v4, v6] = await Promise.allSettled([
      this.dns.resolve4(name, { ttl: true }),
      this.dns.resolve6(name, { ttl: true }),
    ])
    const records = [
      ...(v4.status === 'fulfilled' ? v4.value : []),
      ...(v6.status === 'fulfilled' ? v6.value : []),
    ]
    if (records.length > 0)
      return {
        addresses: records.map((r) => r.address),
        ttlSeconds: Math.min(...records.map((r) => r.ttl)),
      }
    const codes = [v4, v6].map((r) =>
      r.status === 'rejected' ? ((r.reason as NodeJS.ErrnoException).code ?? '') : 'ENODATA',
    )
    if (codes.every((code) => NO_SUCH_NAME.has(code)))
      throw new NameNotFound(
        `cannot resolve ${name}: ${codes.includes('ENOTFOUND') ? 'ENOTFOUND' : 'no addresses'}`,
      )
    if (codes.includes('ETIMEOUT'))
      throw new UpstreamError(`resolving ${name} timed out`, 'timeout')
    throw new UpstreamError(
      `cannot resolve ${name}: the DNS servers failed (${[...new Set(codes)].join(', ')})`,
      'resolve',
    )
  }
}

/** getaddrinfo, which reports no TTL: the answer is kept for the floor. */
async function getaddrinfo(name: string): Promise<DnsAnswer> {
  try {
    const answers = await lookup(name, { all: true, verbatim: true })
    if (answers.length === 0) throw new NameNotFound(`${name} has no addresses`)
    // IPv4 first: sandboxes and most egress networks have no IPv6 route.
    const sorted = answers.sort((a, b) => a.family - b.family).map((a) => a.address)
    return { addresses: sorted, ttlSeconds: 0 }
  } catch (err) {
    if (err instanceof UpstreamError) throw err
    const code = (err as NodeJS.ErrnoException).code ?? String(err)
    const message = `cannot resolve ${name}: ${code}`
    throw code === 'ENOTFOUND' ? new NameNotFound(message) : new UpstreamError(message, 'resolve')
  }
}
