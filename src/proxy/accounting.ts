// The accounting stage: an allowed exchange whose destination a budget
// (`limits:`) covers is admitted only while the budget has room, and its
// traffic is charged as it flows: one request when it starts, then bytes
// each way. Bytes past the limit are not sent: a chunk that would cross it is
// cut at the limit, and the exchange is cut there. Destinations no budget
// covers get no meter and cost nothing per chunk.
//
// Every relay (the splice, the HTTP forwarder, a WebSocket) meters through
// BudgetMeter, so a new path that relays through them is counted too.

import type { ProxyContext } from './context.js'
import {
  budgetRefusal,
  describeUsage,
  type BudgetKind,
  type BudgetLedger,
  type BudgetUsage,
  type Destination,
} from './budgets.js'
import type { Exchange } from './exchange.js'
import { budgetRefusalReply } from './refusal.js'

/** A budget that has no room for another request or connection. */
export interface BudgetRefusal {
  readonly budget: BudgetUsage
}

/**
 * Admits an allowed exchange, or refuses it when its budget is used up (the
 * exchange's decision becomes the budget-exceeded refusal, which its line reports).
 */
export function admitWithinBudget(
  ctx: ProxyContext,
  exchange: Exchange,
): BudgetRefusal | undefined {
  const decision = exchange.decision
  if (!decision) return undefined
  const checked = ctx.budgets.check({ host: decision.host, port: decision.port })
  if (checked.budget) exchange.budget = checked.budget
  if (checked.ok) return undefined
  exchange.decision = budgetRefusal(decision, checked.budget, checked.exceeded)
  return { budget: checked.budget }
}

/** The meter of an admitted exchange; undefined when no budget covers its destination. */
export function meterFor(ctx: ProxyContext, exchange: Exchange): BudgetMeter | undefined {
  const decision = exchange.decision
  if (!decision) return undefined
  const destination = { host: decision.host, port: decision.port }
  return ctx.budgets.limitFor(destination)
    ? new BudgetMeter(ctx.budgets, destination, exchange)
    : undefined
}

/** Charges one exchange's traffic to its budget, and says how much of it may go. */
export class BudgetMeter {
  /** Why the exchange was cut, once it was. */
  exceeded: string | undefined
  /** The budget that cut it, and which of its limits. */
  cutBy: { readonly budget: BudgetUsage; readonly kind: BudgetKind } | undefined

  constructor(
    private readonly ledger: BudgetLedger,
    private readonly destination: Destination,
    private readonly exchange: Exchange,
  ) {}

  /** Counts the request (or connection) as it starts. */
  request(): void {
    this.charged(this.ledger.charge(this.destination, { requests: 1 }).budget)
  }

  /** How many of `n` bytes client to upstream may go; those are charged. Fewer than n: cut. */
  up(n: number): number {
    return this.take(n, 'upload')
  }

  /** How many of `n` bytes upstream to client may go; those are charged. Fewer than n: cut. */
  down(n: number): number {
    return this.take(n, 'download')
  }

  /** Bytes flow while their own kind has room (a used-up request count stops new requests only). */
  private take(n: number, kind: 'upload' | 'download'): number {
    const before = this.ledger.check(this.destination).budget
    const max = before?.limits[kind]
    const used = kind === 'upload' ? before?.up : before?.down
    const allowed = max === undefined ? n : Math.max(0, Math.min(n, max - (used ?? 0)))
    let budget = before
    if (allowed > 0) {
      const usage = kind === 'upload' ? { up: allowed } : { down: allowed }
      budget = this.ledger.charge(this.destination, usage).budget
      this.charged(budget)
    }
    if (allowed < n) this.cut(budget, kind)
    return allowed
  }

  private charged(budget: BudgetUsage | undefined): void {
    if (budget) this.exchange.budget = budget
  }

  private cut(budget: BudgetUsage | undefined, kind: BudgetKind): 0 {
    if (budget) this.exchange.budget = budget
    if (this.exceeded === undefined) {
      this.exceeded = `budget exceeded: ${budget ? describeUsage(budget, kind) : kind}`
      if (budget) this.cutBy = { budget, kind }
      this.exchange.fail(this.exceeded)
    }
    return 0
  }

  /**
   * The 429 for a request cut before its response started: the same answer as a
   * request refused at its start, with the usage that cut it.
   */
  refusalReply(): ReturnType<typeof budgetRefusalReply> | undefined {
    const { cutBy, exchange } = this
    if (!cutBy || !exchange.decision) return undefined
    const decision = budgetRefusal(exchange.decision, cutBy.budget, cutBy.kind)
    return budgetRefusalReply(decision, cutBy.budget, exchange.policy.name)
  }
}
