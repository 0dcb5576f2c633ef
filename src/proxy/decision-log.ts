// The decision log: one pino JSON line per decision on stdout, a bounded ring
// of recent decisions for the admin API (and through it the runner, the SDK
// and the CLI), and the metrics counters. Blocked decisions are always logged;
// allowed ones unless the operator turns them off.

import pino, { type Logger } from 'pino'
import type { Decision, Protocol } from '../policy/index.js'
import { ProxyMetrics } from './metrics.js'

export interface DecisionEvent {
  readonly time: string
  readonly sandbox: string
  readonly profile: string
  readonly protocol: Protocol
  readonly host: string
  readonly port: number
  readonly sni?: string
  readonly method?: string
  readonly path?: string
  /** DNS question type. */
  readonly qtype?: string
  readonly action: 'allow' | 'deny'
  readonly rule: string | null
  readonly reason: string
  readonly detail?: string
  readonly client?: string
  /** The address dialled, when one was. */
  readonly address?: string
  /** Why an allowed connection still failed (resolution, connect, upstream reset). */
  readonly error?: string
  readonly bytesUp: number
  readonly bytesDown: number
  readonly durationMs: number
}

export interface EventQuery {
  readonly action?: 'allow' | 'deny'
  readonly limit?: number
  /** Only events after this ISO time. */
  readonly since?: string
}

export interface DecisionLogOptions {
  readonly sandbox: string
  readonly logAllowed: boolean
  readonly ringSize: number
  /** A pino destination; stdout (buffered, flushed on exit) by default. */
  readonly destination?: pino.DestinationStream
}

/** What a listener knows when it records a decision. */
export interface DecisionRecord {
  readonly protocol: Protocol
  readonly decision: Decision
  readonly profile: string
  readonly sni?: string | null
  readonly method?: string
  readonly path?: string
  readonly qtype?: string
  readonly client?: string
  readonly address?: string
  readonly error?: string
  readonly bytesUp?: number
  readonly bytesDown?: number
  readonly startedAt: number
}

export class DecisionLog {
  readonly metrics = new ProxyMetrics()
  private readonly logger: Logger
  private readonly ring: DecisionEvent[] = []
  private ringStart = 0
  private readonly listeners = new Set<(event: DecisionEvent) => void>()

  constructor(private readonly options: DecisionLogOptions) {
    const destination = options.destination ?? pino.destination({ fd: 1, sync: false })
    this.logger = pino(
      {
        base: undefined,
        timestamp: false,
        messageKey: 'msg',
        formatters: { level: (label) => ({ level: label }) },
      },
      destination,
    )
  }

  record(r: DecisionRecord): DecisionEvent {
    const d = r.decision
    const event: DecisionEvent = {
      time: new Date().toISOString(),
      sandbox: this.options.sandbox,
      profile: r.profile,
      protocol: r.protocol,
      host: d.host,
      port: d.port,
      ...(r.sni ? { sni: r.sni } : {}),
      ...(r.method ? { method: r.method } : {}),
      ...(r.path !== undefined
        ? { path: r.path.length > 512 ? `${r.path.slice(0, 512)}…` : r.path }
        : {}),
      ...(r.qtype ? { qtype: r.qtype } : {}),
      action: d.action,
      rule: d.rule,
      reason: d.reason,
      ...(d.detail ? { detail: d.detail } : {}),
      ...(r.client ? { client: r.client } : {}),
      ...(r.address ? { address: r.address } : {}),
      ...(r.error ? { error: r.error } : {}),
      bytesUp: r.bytesUp ?? 0,
      bytesDown: r.bytesDown ?? 0,
      durationMs: Math.round((performance.now() - r.startedAt) * 10) / 10,
    }
    this.metrics.countDecision(d.action, d.reason, r.protocol)
    this.metrics.countBytes(event.bytesUp, event.bytesDown)
    this.remember(event)
    if (d.action === 'deny') this.logger.warn(event, 'blocked')
    else if (this.options.logAllowed) this.logger.info(event, 'allowed')
    for (const listener of this.listeners) listener(event)
    return event
  }

  private remember(event: DecisionEvent): void {
    if (this.options.ringSize <= 0) return
    if (this.ring.length < this.options.ringSize) {
      this.ring.push(event)
    } else {
      this.ring[this.ringStart] = event
      this.ringStart = (this.ringStart + 1) % this.options.ringSize
    }
  }

  get size(): number {
    return this.ring.length
  }

  /** Recent events, oldest first, filtered; at most `limit` (the newest ones). */
  events(query: EventQuery = {}): DecisionEvent[] {
    const ordered = [...this.ring.slice(this.ringStart), ...this.ring.slice(0, this.ringStart)]
    const filtered = ordered.filter(
      (e) => (!query.action || e.action === query.action) && (!query.since || e.time > query.since),
    )
    const limit = query.limit ?? 100
    return limit >= filtered.length ? filtered : filtered.slice(filtered.length - limit)
  }

  subscribe(listener: (event: DecisionEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Operational messages (start, stop, policy changes), on the same stream. */
  get operational(): Logger {
    return this.logger
  }

  flush(): void {
    this.logger.flush()
  }
}
