// The accounting stage: an allowed exchange whose destination a budget
// (`limits:`) covers is admitted only while the budget has room, and its
// traffic is charged: one request when it is admitted, then bytes as they flow
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
 * Admits an allowed exchange and charges its request, or refuses it when its
 * budget is used up (the exchange's decision becomes the budget-exceeded
 * refusal, which its line reports). The request is charged here, not when
 * traffic starts: exchanges admitted in between (every concurrent tunnel while
 * the first one dials, every request while undici loads) would otherwise all
 * pass the same check. An exchange admitted before is not charged again (a
 * tunnel is admitted at CONNECT and again after its peek).
 */
export function admitWithinBudget(
  ctx: ProxyContext,
  exchange: Exchange,
): BudgetRefusal | undefined {
  const decision = exchange.decision
  if (!decision || exchange.requestCharged) return undefined
  const destination = { host: decision.host, port: decision.port }
  const checked = ctx.budgets.check(destination)
  if (checked.budget) exchange.budget = checked.budget
  if (!checked.ok) {
    exchange.decision = budgetRefusal(decision, checked.budget, checked.exceeded)
    return { budget: checked.budget }
  }
  if (!checked.budget) return undefined // no budget covers it: nothing to count
  const charged = ctx.budgets.charge(destination, { requests: 1 }).budget
  if (charged) exchange.budget = charged
  exchange.requestCharged = true
  return undefined
}

/**
 * Gives back the request an admitted exchange was charged, when nothing went
 * upstream for it after all: refused after its peek, a client that left before
 * its request was sent, or a tunnel handed to interception (each request inside
 * is admitted and charged on its own).
 */
export function releaseAdmission(ctx: ProxyContext, exchange: Exchange): void {
  const decision = exchange.decision
  if (!decision || !exchange.requestCharged) return
  exchange.requestCharged = false
  const charged = ctx.budgets.charge(
    { host: decision.host, port: decision.port },
    { requests: -1 },
  ).budget
  if (charged) exchange.budget = charged
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
