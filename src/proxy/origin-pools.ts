// Upstream connection pools for forwarded plain HTTP: one undici pool per
// (host, port, checked address), so a connection is never reused for another
// host or an address that was not checked for it; the least recently used is
// closed past a bound.
//
// undici (the Node.js project's HTTP client) is loaded with the first plain
// HTTP request: a sidecar that only tunnels TLS (the common case) never pays
// its memory.

import type { SecureContext } from 'node:tls'
import type { Pool } from 'undici'
import type { ProxyContext } from './context.js'
import { gatedConnector } from './upstream-gate.js'

type Undici = typeof import('undici')

/** How an https origin is reached: the name its certificate must carry, and the CAs trusted. */
export interface UpstreamTls {
  /** The SNI and the name checked; undefined for an IP address (its certificate names it). */
  readonly servername: string | undefined
  /** The system roots plus the operator's CAs, made once; undefined: Node's defaults. */
  readonly secureContext: SecureContext | undefined
}

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

  /**
   * The pool for `key`, made for `origin()` if there is none; after the first, without
   * waiting. `tls`: an https origin (interception), verified for that server name.
   */
  get(key: string, origin: () => string, tls?: UpstreamTls): Pool | Promise<Pool> {
    if (!undici) return loadUndici().then(() => this.get(key, origin, tls))
    let pool = this.pools.get(key)
    if (pool) {
      this.pools.delete(key) // re-inserted below: most recently used last
    } else {
      pool = this.create(undici, origin(), tls)
      if (this.pools.size >= this.limit) {
        const [oldestKey, oldest] = this.pools.entries().next().value as [string, Pool]
        void oldest.close().catch(() => undefined)
        this.pools.delete(oldestKey)
      }
    }
    this.pools.set(key, pool)
    return pool
  }

  private create(
    { Pool, buildConnector }: Undici,
    origin: string,
    tls: UpstreamTls | undefined,
  ): Pool {
    const t = this.ctx.timeouts
    // An https origin speaks h2 where the server offers it (ALPN), HTTP/1.1 otherwise;
    // the certificate must verify for the checked name (rejectUnauthorized is undici's default).
    const connectOptions = tls
      ? {
          allowH2: true,
          timeout: t.connectMs,
          rejectUnauthorized: true,
          ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
          ...(tls.secureContext ? { secureContext: tls.secureContext } : {}),
        }
      : { timeout: t.connectMs }
    return new Pool(origin, {
      connections: 64,
      // One response at a time per connection: a gate (upstream-gate.ts) holds one response.
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: t.idleMs,
      bodyTimeout: t.idleMs,
      ...(tls ? { allowH2: true } : {}),
      connect: gatedConnector(buildConnector(connectOptions)),
    })
  }

  destroy(): void {
    for (const pool of this.pools.values()) void pool.destroy().catch(() => undefined)
    this.pools.clear()
  }
}
