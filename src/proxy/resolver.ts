// Names to addresses for upstream connections. Only names the policy allows
// are ever looked up (the callers decide by name first); the addresses found
// are what decide() checks and what the proxy dials, never a second lookup.

import { lookup } from 'node:dns/promises'
import { canonicalHost, type CanonicalHost } from '../policy/index.js'
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

export class Resolver {
  constructor(
    private readonly overrides: ResolveOverrides = new Map(),
    private readonly timeoutMs = 5000,
  ) {}

  /**
   * Addresses known without asking a DNS server: an IP literal's own, or a name's
   * overrides. Undefined when resolving would need a lookup.
   */
  resolveLocal(host: CanonicalHost): string[] | undefined {
    if (host.kind === 'ip') return [host.text]
    const override = this.overrides.get(host.name)
    return override ? [...override] : undefined
  }

  /**
   * Addresses for a canonical host: an IP literal is its own address; a name comes
   * from the overrides or the system resolver (so /etc/hosts and Docker's
   * extra_hosts and embedded DNS work).
   */
  async resolve(host: CanonicalHost): Promise<string[]> {
    if (host.kind === 'ip') return [host.text]
    const override = this.overrides.get(host.name)
    if (override) return [...override]
    let timer: NodeJS.Timeout | undefined
    try {
      const answers = await Promise.race([
        lookup(host.name, { all: true, verbatim: true }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new UpstreamError(`resolving ${host.name} timed out`, 'timeout')),
            this.timeoutMs,
          )
        }),
      ])
      if (answers.length === 0) throw new UpstreamError(`${host.name} has no addresses`, 'resolve')
      // IPv4 first: sandboxes and most egress networks have no IPv6 route.
      return answers.sort((a, b) => a.family - b.family).map((a) => a.address)
    } catch (err) {
      if (err instanceof UpstreamError) throw err
      throw new UpstreamError(
        `cannot resolve ${host.name}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        'resolve',
      )
    } finally {
      if (timer) clearTimeout(timer)
    }
  }
}
