// Upstream connection pools for forwarded plain HTTP: one undici pool per
// (host, port, checked address), so a connection is never reused for another
// host or an address that was not checked for it; the least recently used is
// closed past a bound.
//
// undici (the Node.js project's HTTP client) is loaded with the first plain
// HTTP request: a sidecar that only tunnels TLS (the common case) never pays
// its memory.

import type { Pool } from 'undici'
import type { ProxyContext } from './context.js'

type Undici = typeof import('undici')

let undici: Undici | undefined
let loading: Promise<Undici> | undefined
function loadUndici(): Promise<Undici> {
  loading ??= import('undici').then((module) => (undici = module))
  return loading
}

export class OriginPools {
  private readonly pools = new Map<string, Pool>()

  constructor(
    private readonly ctx: ProxyContext,
    private readonly limit = 512,
  ) {}

  /** The pool for `key`, made for `origin()` if there is none; after the first, without waiting. */
  get(key: string, origin: () => string): Pool | Promise<Pool> {
    if (!undici) return loadUndici().then(() => this.get(key, origin))
    let pool = this.pools.get(key)
    if (pool) {
      this.pools.delete(key) // re-inserted below: most recently used last
    } else {
      pool = this.create(undici, origin())
      if (this.pools.size >= this.limit) {
        const [oldestKey, oldest] = this.pools.entries().next().value as [string, Pool]
        void oldest.close().catch(() => undefined)
        this.pools.delete(oldestKey)
      }
    }
    this.pools.set(key, pool)
    return pool
  }

  private create({ Pool }: Undici, origin: string): Pool {
    const t = this.ctx.timeouts
    return new Pool(origin, {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: t.idleMs,
      bodyTimeout: t.idleMs,
      connect: { timeout: t.connectMs },
    })
  }

  destroy(): void {
    for (const pool of this.pools.values()) void pool.destroy().catch(() => undefined)
    this.pools.clear()
  }
}
