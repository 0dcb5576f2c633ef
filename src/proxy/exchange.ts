// One exchange between a client and an upstream: a tunnel, or one HTTP request
// the proxy read. It takes the policy in force when it starts, and every
// decision about it goes through decide() here, so what the log line reports
// is always the last decision made. It is the one place bytes are counted
// from (whatever relayed them says how, with a meter) and the one place its
// log line is written: once, when it ends or is refused.
//
// The hold stage is here too: a decision marked `ask` is held while the runner
// asks someone (hold()), and the answer then stands for every later decision
// about the same target on this exchange (the policy it started with still
// says `ask`): the addresses once resolved, the SNI once peeked.

import type net from 'node:net'
import { decide, type Decision, type EgressRequest, type Policy } from '../policy/index.js'
import { approvalRecord, decisionAfterApproval, type ApprovalOutcome } from './approvals.js'
import type { BudgetUsage } from './budgets.js'
import { clientAddress, type ProxyContext } from './context.js'
import type { DecisionRecord } from './decision-log.js'

export type ExchangeProtocol = DecisionRecord['protocol']

/** Bytes relayed so far: up is client to upstream. */
export interface ByteCount {
  readonly up: number
  readonly down: number
}

/** An approval answer and the target it was given for. */
export interface HeldAnswer {
  readonly host: string
  readonly port: number
  readonly outcome: ApprovalOutcome
}

export class Exchange {
  readonly startedAt = performance.now()
  readonly policy: Policy
  /** The client's address, read now: a closed socket no longer knows it. */
  readonly client: string | undefined
  /** Whom the client asked for, once known; a line can then be written even without a decision. */
  target: { readonly host: string; readonly port: number } | undefined
  decision: Decision | undefined
  sni: string | null | undefined
  method: string | undefined
  path: string | undefined
  /** The status of the response to a request the proxy read. */
  status: number | undefined
  /** The upstream dialled (an address, or the parent proxy and the address it was sent). */
  address: string | undefined
  /** Why an allowed exchange still failed; the first reason given counts. */
  error: string | undefined
  /** The budget the target counts against, with its usage, for the line. */
  budget: BudgetUsage | undefined
  /**
   * Its request (or connection) was charged to its budget when it was admitted,
   * not when traffic starts (accounting.ts): charged once, given back once.
   */
  requestCharged = false
  /** The answer this exchange was held for (or inherited from its tunnel). */
  private answered: HeldAnswer | undefined
  private meter: (() => ByteCount) | undefined
  private ended = false

  constructor(
    private readonly ctx: ProxyContext,
    readonly protocol: ExchangeProtocol,
    socket: net.Socket,
  ) {
    this.policy = ctx.policy.current
    this.client = clientAddress(socket)
  }

  /** Decides `request` under this exchange's policy; the log line reports the last decision. */
  decide(request: EgressRequest): Decision {
    let decision = decide(request, this.policy)
    // Only `ask` is answered: a refusal for any other reason (a special address, an SNI
    // that names another host) still refuses after an approval.
    const answered = this.answered
    if (
      decision.ask &&
      answered &&
      answered.host === decision.host &&
      answered.port === decision.port
    )
      decision = decisionAfterApproval(decision, answered.outcome)
    this.decision = decision
    return decision
  }

  /**
   * The hold stage: an `ask` decision waits for an answer (nothing is dialled
   * meanwhile), and becomes an allow or a deny. `signal` aborts when the client
   * leaves: the hold ends then as a deny, and the approval stays for others.
   */
  async hold(decision: Decision, signal: AbortSignal): Promise<Decision> {
    const outcome = await this.ctx.approvals.ask(
      {
        protocol: this.protocol,
        host: decision.host,
        port: decision.port,
        ...(this.method !== undefined ? { method: this.method } : {}),
        ...(this.path !== undefined ? { path: this.path } : {}),
        ...(this.client !== undefined ? { client: this.client } : {}),
      },
      { signal },
    )
    this.answered = { host: decision.host, port: decision.port, outcome }
    this.decision = decisionAfterApproval(decision, outcome)
    return this.decision
  }

  /** The approval that let this exchange through, for the requests a tunnel carries. */
  get approved(): HeldAnswer | undefined {
    const answered = this.answered
    return answered && answered.outcome.answer !== 'deny' && answered.outcome.answer !== 'timeout'
      ? answered
      : undefined
  }

  /** Takes the approval of the tunnel this exchange is a request in. */
  inherit(approved: HeldAnswer | undefined): void {
    this.answered = approved
  }

  /** Records why the exchange failed, unless a reason was recorded already. */
  fail(error: string): void {
    this.error ??= error
  }

  /** Where the line's byte counts come from, read when it is written. */
  countBytesWith(meter: () => ByteCount): void {
    this.meter = meter
  }

  /** Bytes relayed so far. */
  bytes(): ByteCount {
    return this.meter?.() ?? { up: 0, down: 0 }
  }

  get hasEnded(): boolean {
    return this.ended
  }

  /**
   * Writes the exchange's one log line (and counts it in the metrics); later calls
   * do nothing. Without a decision there is nothing to report: nothing was asked.
   */
  end(): void {
    if (this.ended || !this.decision) return
    this.ended = true
    const bytes = this.bytes()
    this.ctx.log.record(
      {
        protocol: this.protocol,
        decision: this.decision,
        sni: this.sni,
        method: this.method,
        path: this.path,
        status: this.status,
        client: this.client,
        address: this.address,
        error: this.error,
        bytesUp: bytes.up,
        bytesDown: bytes.down,
        startedAt: this.startedAt,
        approval: this.answered && approvalRecord(this.answered.outcome),
        budget: this.budget,
      },
      this.policy.name,
    )
  }

  /**
   * Ends an exchange that broke off with an error the data path did not expect:
   * decided on its target alone if nothing was decided yet, so that a connection
   * with a target always leaves a line.
   */
  endWithError(error: string): void {
    if (this.ended) return
    this.fail(error)
    if (!this.decision && this.target)
      this.decide({ protocol: this.protocol, host: this.target.host, port: this.target.port })
    this.end()
  }
}
