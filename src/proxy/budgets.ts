// The budget ledger: usage of the policy's `limits` per pattern, over the
// sandbox's lifetime or a rolling window. The accounting stage calls
// `check()` before a request or connection starts (refuse with reason
// budget-exceeded when nothing is left) and `charge()` as bytes flow (cut the
// connection when it reports `over`).
//
// Memory is bounded: one counter set per limit pattern (a policy's limits),
// a rolling window kept as BUCKETS buckets (so usage is exact to 1/BUCKETS of
// the window), and usage per destination, for display, for at most
// MAX_DESTINATIONS destinations (the least recently charged is dropped).

import {
  formatBytes,
  formatDuration,
  parseHost,
  type Decision,
  type Limit,
  type Policy,
} from '../policy/index.js'

/** A window is kept as this many buckets. */
const BUCKETS = 60
const MAX_DESTINATIONS = 512

export interface Usage {
  readonly up: number
  readonly down: number
  readonly requests: number
}

/** Where traffic goes: `decision.host` and the port. */
export interface Destination {
  readonly host: string
  readonly port: number
}

/** Usage of one budget and its limits, as the events, the admin API and /metrics show it. */
export interface BudgetUsage {
  readonly pattern: string
  readonly up: number
  readonly down: number
  readonly requests: number
  readonly limits: {
    readonly upload?: number
    readonly download?: number
    readonly requests?: number
    readonly windowMs?: number
  }
  readonly exceeded: boolean
}

export type BudgetKind = 'upload' | 'download' | 'requests'

/** `check()`: may a new request or connection start? */
export type BudgetCheck =
  | { readonly ok: true; readonly budget?: BudgetUsage; readonly remaining?: Remaining }
  | { readonly ok: false; readonly budget: BudgetUsage; readonly exceeded: BudgetKind }

/** Bytes and requests left before the budget is used up (absent: no limit of that kind). */
export interface Remaining {
  readonly upload?: number
  readonly download?: number
  readonly requests?: number
}

/** `charge()`: is the connection that was charged now over its budget (cut it)? */
export type ChargeResult =
  | { readonly over: false; readonly budget?: BudgetUsage }
  | { readonly over: true; readonly budget: BudgetUsage; readonly exceeded: BudgetKind }

/** Counters over a lifetime (one bucket) or a rolling window (BUCKETS buckets). */
class Counter {
  private readonly up: number[]
  private readonly down: number[]
  private readonly requests: number[]
  /** Index (time / bucketMs) of the newest bucket written. */
  private newest = 0

  constructor(readonly windowMs: number | undefined) {
    const n = windowMs === undefined ? 1 : BUCKETS
    this.up = new Array<number>(n).fill(0)
    this.down = new Array<number>(n).fill(0)
    this.requests = new Array<number>(n).fill(0)
  }

  private get bucketMs(): number {
    return (this.windowMs as number) / BUCKETS
  }

  /** Clears buckets that fell out of the window; returns the current bucket's slot. */
  private advance(now: number): number {
    if (this.windowMs === undefined) return 0
    const index = Math.floor(now / this.bucketMs)
    const gap = Math.min(index - this.newest, BUCKETS)
    for (let i = 1; i <= gap; i++) {
      const slot = (this.newest + i) % BUCKETS
      this.up[slot] = 0
      this.down[slot] = 0
      this.requests[slot] = 0
    }
    if (index > this.newest) this.newest = index
    return this.newest % BUCKETS
  }

  add(usage: Partial<Usage>, now: number): void {
    const slot = this.advance(now)
    this.up[slot] = (this.up[slot] as number) + (usage.up ?? 0)
    this.down[slot] = (this.down[slot] as number) + (usage.down ?? 0)
    this.requests[slot] = (this.requests[slot] as number) + (usage.requests ?? 0)
  }

  total(now: number): Usage {
    this.advance(now)
    const sum = (list: number[]): number => list.reduce((a, b) => a + b, 0)
    return { up: sum(this.up), down: sum(this.down), requests: sum(this.requests) }
  }
}

function overBy(limit: Limit, usage: Usage, atLimit: boolean): BudgetKind | undefined {
  const past = (used: number, max: number | undefined): boolean =>
    max !== undefined && (atLimit ? used >= max : used > max)
  if (past(usage.up, limit.upload)) return 'upload'
  if (past(usage.down, limit.download)) return 'download'
  if (past(usage.requests, limit.requests)) return 'requests'
  return undefined
}

export class BudgetLedger {
  private readonly counters = new Map<string, Counter>()
  /** Usage per `host:port` for display (lifetime), most recently charged last. */
  private readonly destinations = new Map<string, Usage & { pattern: string }>()

  constructor(
    private readonly policy: () => Policy,
    private readonly now: () => number = Date.now,
  ) {}

  /** The limit covering a destination under the policy in force. */
  limitFor(destination: Destination): Limit | undefined {
    const policy = this.policy()
    if (policy.limits.size === 0) return undefined
    const host = parseHost(destination.host)
    return host.kind === 'invalid' ? undefined : policy.limits.match(host, destination.port)
  }

  private counter(limit: Limit): Counter {
    let counter = this.counters.get(limit.key)
    // A changed window starts afresh; the same pattern keeps its usage across policy updates.
    if (!counter || counter.windowMs !== limit.windowMs) {
      counter = new Counter(limit.windowMs)
      this.counters.set(limit.key, counter)
    }
    return counter
  }

  private usageOf(limit: Limit, usage: Usage, exceeded: boolean): BudgetUsage {
    return {
      pattern: limit.key,
      ...usage,
      limits: {
        ...(limit.upload !== undefined ? { upload: limit.upload } : {}),
        ...(limit.download !== undefined ? { download: limit.download } : {}),
        ...(limit.requests !== undefined ? { requests: limit.requests } : {}),
        ...(limit.windowMs !== undefined ? { windowMs: limit.windowMs } : {}),
      },
      exceeded,
    }
  }

  /** May a new request or connection to the destination start? Refused when any budget is used up. */
  check(destination: Destination): BudgetCheck {
    const limit = this.limitFor(destination)
    if (!limit) return { ok: true }
    const usage = this.counter(limit).total(this.now())
    const exceeded = overBy(limit, usage, true)
    const budget = this.usageOf(limit, usage, exceeded !== undefined)
    if (exceeded) return { ok: false, budget, exceeded }
    return {
      ok: true,
      budget,
      remaining: {
        ...(limit.upload !== undefined ? { upload: limit.upload - usage.up } : {}),
        ...(limit.download !== undefined ? { download: limit.download - usage.down } : {}),
        ...(limit.requests !== undefined ? { requests: limit.requests - usage.requests } : {}),
      },
    }
  }

  /**
   * Counts traffic to a destination: bytes as they flow, a request when one
   * starts. `over` when the budget is now past its limit: cut the connection.
   */
  charge(destination: Destination, usage: Partial<Usage>): ChargeResult {
    const limit = this.limitFor(destination)
    if (!limit) return { over: false }
    const now = this.now()
    const counter = this.counter(limit)
    counter.add(usage, now)
    this.remember(destination, limit.key, usage)
    const total = counter.total(now)
    const over = overBy(limit, total, false)
    const budget = this.usageOf(limit, total, overBy(limit, total, true) !== undefined)
    return over ? { over: true, budget, exceeded: over } : { over: false, budget }
  }

  private remember(destination: Destination, pattern: string, usage: Partial<Usage>): void {
    const key = `${destination.host}:${destination.port}`
    const before = this.destinations.get(key)
    this.destinations.delete(key)
    this.destinations.set(key, {
      pattern,
      up: (before?.up ?? 0) + (usage.up ?? 0),
      down: (before?.down ?? 0) + (usage.down ?? 0),
      requests: (before?.requests ?? 0) + (usage.requests ?? 0),
    })
    if (this.destinations.size > MAX_DESTINATIONS) {
      const oldest = this.destinations.keys().next().value
      if (oldest !== undefined) this.destinations.delete(oldest)
    }
  }

  /** Every budget of the policy in force with its usage now. */
  budgets(): BudgetUsage[] {
    const now = this.now()
    return this.policy()
      .limits.all()
      .map((limit) => {
        const usage = this.counter(limit).total(now)
        return this.usageOf(limit, usage, overBy(limit, usage, true) !== undefined)
      })
  }

  /** Lifetime usage per destination that counts against a budget, most recently used last. */
  perDestination(): {
    destination: string
    pattern: string
    up: number
    down: number
    requests: number
  }[] {
    return [...this.destinations].map(([destination, u]) => ({ destination, ...u }))
  }
}

/** The refusal decision for a request whose budget is used up. */
export function budgetRefusal(
  decision: Decision,
  budget: BudgetUsage,
  exceeded: BudgetKind,
): Decision {
  return {
    action: 'deny',
    reason: 'budget-exceeded',
    rule: budget.pattern,
    from: decision.from,
    host: decision.host,
    port: decision.port,
    detail: describeUsage(budget, exceeded),
  }
}

/** `upload 10.0 MiB of 10.0 MiB in the last 1h`. */
export function describeUsage(budget: BudgetUsage, exceeded: BudgetKind): string {
  const window =
    budget.limits.windowMs !== undefined
      ? `in the last ${formatDuration(budget.limits.windowMs)}`
      : "over the sandbox's lifetime"
  switch (exceeded) {
    case 'upload':
      return `upload ${formatBytes(budget.up)} of ${formatBytes(budget.limits.upload ?? 0)} ${window}`
    case 'download':
      return `download ${formatBytes(budget.down)} of ${formatBytes(budget.limits.download ?? 0)} ${window}`
    case 'requests':
      return `${budget.requests} of ${budget.limits.requests ?? 0} requests ${window}`
  }
}
