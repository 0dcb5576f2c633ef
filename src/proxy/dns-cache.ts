// Answers of the proxy's own DNS lookups (of upstream names the policy allows),
// kept for their TTL within a floor and a ceiling the operator sets, so a new
// connection to a name seen recently needs no lookup. Lookups of one name that
// overlap share one query. A name that does not exist is remembered for the
// floor. The cache is bounded; the oldest entries go first.

import { UpstreamError } from './upstream.js'

/** The DNS said the name has no addresses (NXDOMAIN, or no A and no AAAA records). */
export class NameNotFound extends UpstreamError {
  constructor(message: string) {
    super(message, 'resolve')
  }
}

export interface DnsAnswer {
  readonly addresses: string[]
  /** Seconds the answer may be kept, as its records said (the smallest). */
  readonly ttlSeconds: number
}

export interface DnsCacheOptions {
  /** Answers are kept at least this long, whatever their TTL. */
  readonly minTtlSeconds: number
  /** And at most this long. */
  readonly maxTtlSeconds: number
  readonly maxEntries?: number
  /** The clock, in milliseconds. */
  readonly now?: () => number
}

interface Entry {
  readonly addresses: string[] | undefined
  /** Why the name has no addresses (remembered for the floor). */
  readonly error: UpstreamError | undefined
  readonly expiresAt: number
}

export class DnsCache {
  private readonly entries = new Map<string, Entry>()
  private readonly pending = new Map<string, Promise<string[]>>()
  private readonly now: () => number
  private readonly maxEntries: number

  constructor(
    private readonly query: (name: string) => Promise<DnsAnswer>,
    private readonly options: DnsCacheOptions,
  ) {
    this.now = options.now ?? Date.now
    this.maxEntries = options.maxEntries ?? 10_000
  }

  /** The addresses of a name whose answer is still fresh, without a lookup; else undefined. */
  fresh(name: string): string[] | undefined {
    const entry = this.entries.get(name)
    if (!entry?.addresses || entry.expiresAt <= this.now()) return undefined
    return entry.addresses
  }

  /** The addresses of a name: fresh from the cache, from a lookup under way, or from a new one. */
  lookup(name: string): Promise<string[]> {
    const entry = this.entries.get(name)
    if (entry && entry.expiresAt > this.now())
      return entry.addresses ? Promise.resolve(entry.addresses) : Promise.reject(entry.error)
    let pending = this.pending.get(name)
    if (!pending) {
      pending = this.ask(name).finally(() => this.pending.delete(name))
      this.pending.set(name, pending)
    }
    return pending
  }

  private async ask(name: string): Promise<string[]> {
    const { minTtlSeconds, maxTtlSeconds } = this.options
    try {
      const answer = await this.query(name)
      const seconds = Math.min(maxTtlSeconds, Math.max(minTtlSeconds, answer.ttlSeconds))
      this.remember(name, { addresses: answer.addresses, error: undefined, seconds })
      return answer.addresses
    } catch (err) {
      // A name that does not exist is remembered; a server that failed is asked again.
      if (err instanceof NameNotFound)
        this.remember(name, { addresses: undefined, error: err, seconds: minTtlSeconds })
      throw err
    }
  }

  private remember(
    name: string,
    found: { addresses: string[] | undefined; error: UpstreamError | undefined; seconds: number },
  ): void {
    this.entries.delete(name)
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value as string
      this.entries.delete(oldest)
    }
    this.entries.set(name, {
      addresses: found.addresses,
      error: found.error,
      expiresAt: this.now() + found.seconds * 1000,
    })
  }
}
