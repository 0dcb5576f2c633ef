// Approvals: with `onUnknown: ask`, a request that no rule allows (decide()
// marks it `ask`) is held while someone answers: allow once (this request),
// allow for the sandbox (a live rule, optionally with a TTL), or deny. Nobody
// answering within the policy's approvalTimeoutMs is a deny.
//
// The hold stages (and the DNS listener) call `ask()`; the runner long-polls
// `pending()` through the admin API and answers with `answer()`. Identical
// requests (same host and port) share one pending approval and one answer.
// Memory is bounded: at most `maxPending` approvals and `maxWaiters` held
// requests; past that a request is refused at once. An approval lives until
// it is answered or times out, whether or not anyone still waits on it, so a
// client that retries (a resolver) joins the same approval.

import { randomBytes } from 'node:crypto'
import {
  compilePolicy,
  formatDuration,
  type Decision,
  type OperatorSettings,
  type PolicySpec,
  type Protocol,
  type RuleSource,
} from '../policy/index.js'
import type { PolicyHolder } from './context.js'
import type { OperationalLog } from './decision-log.js'

export type ApprovalAnswer = 'once' | 'sandbox' | 'deny' | 'timeout'
/** What a person (or program) can answer. */
export type GivenAnswer = Exclude<ApprovalAnswer, 'timeout'>

/** What a hold stage knows about the request it holds. */
export interface ApprovalRequest {
  readonly protocol: Protocol
  /** Canonical host, as decide() gave it (`decision.host`). */
  readonly host: string
  /** 0 for DNS. */
  readonly port: number
  readonly method?: string
  readonly path?: string
  readonly client?: string
}

/** The answer a held request gets. */
export interface ApprovalOutcome {
  readonly id: string
  readonly answer: ApprovalAnswer
  /** Who answered (`cli:alice`, `webhook`, `sdk`), or why nobody did. */
  readonly by: string
  /** For `sandbox`: the live rule added. */
  readonly rule?: string
}

/** What the decision log keeps of an outcome. */
export interface ApprovalRecord {
  readonly id: string
  readonly answer: ApprovalAnswer
  readonly by: string
}

/** A pending approval as the admin API shows it (the runner adds the sandbox). */
export interface PendingApprovalView {
  readonly id: string
  readonly protocol: Protocol
  readonly host: string
  readonly port: number
  readonly method?: string
  readonly path?: string
  /** The rule a `sandbox` answer adds. */
  readonly rule: string
  readonly waiting: number
  readonly createdAt: string
  readonly expiresAt: string
}

/** A live rule added by a `sandbox` answer. */
export interface LiveRule {
  readonly rule: string
  readonly id: string
  readonly by: string
  readonly expiresAt: string | null
}

export class ApprovalError extends Error {
  constructor(
    readonly status: 400 | 404,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

/** `from` of the rules that `sandbox` answers add. */
export const APPROVAL_SOURCE = 'approval'
export const DEFAULT_MAX_PENDING = 256
export const DEFAULT_MAX_WAITERS = 4096
/** A live rule's TTL may be at most this long (a week); without one it lasts as long as the sandbox. */
const MAX_TTL_MS = 7 * 86_400_000

interface Waiter {
  resolve(outcome: ApprovalOutcome): void
}

interface Pending {
  readonly view: Omit<PendingApprovalView, 'waiting'>
  readonly key: string
  readonly waiters: Set<Waiter>
  readonly timer: NodeJS.Timeout
}

export interface ApprovalsOptions {
  readonly policy: PolicyHolder
  readonly operator: OperatorSettings
  readonly log: OperationalLog
  readonly maxPending?: number
  readonly maxWaiters?: number
}

/** The rule a `sandbox` answer adds: the host, with the port when it is not 80/443 (DNS: the host). */
export function ruleFor(host: string, port: number): string {
  const name = host.includes(':') ? `[${host}]` : host
  return port === 0 || port === 80 || port === 443 ? host : `${name}:${port}`
}

export class Approvals {
  private readonly byId = new Map<string, Pending>()
  private readonly byKey = new Map<string, Pending>()
  private readonly live = new Map<string, { rule: LiveRule; timer?: NodeJS.Timeout }>()
  private waiters = 0
  /** Grows at every change of the pending set, for long polls. */
  private version = 0
  private readonly changeListeners = new Set<() => void>()
  private readonly maxPending: number
  private readonly maxWaiters: number

  constructor(private readonly options: ApprovalsOptions) {
    this.maxPending = options.maxPending ?? DEFAULT_MAX_PENDING
    this.maxWaiters = options.maxWaiters ?? DEFAULT_MAX_WAITERS
  }

  /**
   * Holds a request until it is answered, it times out, or `signal` aborts (the
   * client left; then the outcome is a deny by `client-gone`, and the approval
   * stays pending for others). `waitMs` shortens the wait for this request only
   * (DNS answers before the resolver gives up) without ending the approval.
   */
  ask(
    request: ApprovalRequest,
    options: { signal?: AbortSignal; waitMs?: number } = {},
  ): Promise<ApprovalOutcome> {
    const key = `${request.host}\u0000${request.port}`
    let pending = this.byKey.get(key)
    if (!pending) {
      if (this.byId.size >= this.maxPending)
        return Promise.resolve({
          id: '',
          answer: 'deny',
          by: `isorun: ${this.maxPending} requests already wait for an approval`,
        })
      pending = this.open(key, request)
    }
    if (this.waiters >= this.maxWaiters)
      return Promise.resolve({
        id: pending.view.id,
        answer: 'deny',
        by: `isorun: ${this.maxWaiters} requests are already held`,
      })
    const held = pending
    return new Promise<ApprovalOutcome>((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const leave = (outcome: ApprovalOutcome): void => {
        if (!held.waiters.delete(waiter)) return
        this.waiters--
        clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        this.changed()
        resolve(outcome)
      }
      const waiter: Waiter = { resolve: leave }
      const onAbort = (): void =>
        leave({ id: held.view.id, answer: 'deny', by: 'isorun: the client left' })
      held.waiters.add(waiter)
      this.waiters++
      this.changed()
      if (options.signal?.aborted) return onAbort()
      options.signal?.addEventListener('abort', onAbort, { once: true })
      if (options.waitMs !== undefined)
        timer = setTimeout(
          () =>
            leave({
              id: held.view.id,
              answer: 'timeout',
              by: `isorun: no answer within ${formatDuration(options.waitMs as number)} (this request's wait; the approval stays pending)`,
            }),
          options.waitMs,
        )
    })
  }

  private open(key: string, request: ApprovalRequest): Pending {
    const id = `apr_${randomBytes(9).toString('base64url')}`
    const timeoutMs = this.options.policy.current.approvalTimeoutMs
    const now = Date.now()
    const timer = setTimeout(
      () =>
        this.settle(id, {
          id,
          answer: 'timeout',
          by: `isorun: no answer within ${formatDuration(timeoutMs)}`,
        }),
      timeoutMs,
    )
    timer.unref()
    const pending: Pending = {
      key,
      waiters: new Set(),
      timer,
      view: {
        id,
        protocol: request.protocol,
        host: request.host,
        port: request.port,
        ...(request.method !== undefined ? { method: request.method } : {}),
        ...(request.path !== undefined ? { path: request.path } : {}),
        rule: ruleFor(request.host, request.port),
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + timeoutMs).toISOString(),
      },
    }
    this.byId.set(id, pending)
    this.byKey.set(key, pending)
    this.options.log.info(
      { approval: id, host: request.host, port: request.port, protocol: request.protocol },
      'approval requested',
    )
    this.changed()
    return pending
  }

  /** Answers a pending approval; every request waiting on it gets the answer. */
  answer(
    id: string,
    given: { answer: GivenAnswer; by: string; ttlMs?: number },
  ): { id: string; answer: GivenAnswer; by: string; rule?: string; expiresAt?: string | null } {
    if (!['once', 'sandbox', 'deny'].includes(given.answer))
      throw new ApprovalError(400, 'invalid-answer', 'answer must be once, sandbox or deny')
    if (given.ttlMs !== undefined) {
      if (given.answer !== 'sandbox')
        throw new ApprovalError(400, 'invalid-answer', 'a TTL only goes with answer sandbox')
      if (!Number.isInteger(given.ttlMs) || given.ttlMs < 1 || given.ttlMs > MAX_TTL_MS)
        throw new ApprovalError(
          400,
          'invalid-answer',
          `ttlMs must be a whole number of milliseconds up to ${MAX_TTL_MS} (7 days)`,
        )
    }
    const pending = this.byId.get(id)
    if (!pending)
      throw new ApprovalError(
        404,
        'approval-not-found',
        `no pending approval ${id}: it was answered, timed out, or never existed`,
      )
    let live: LiveRule | undefined
    if (given.answer === 'sandbox') live = this.addLiveRule(pending.view.rule, id, given)
    this.settle(id, {
      id,
      answer: given.answer,
      by: given.by,
      ...(live ? { rule: live.rule } : {}),
    })
    return {
      id,
      answer: given.answer,
      by: given.by,
      ...(live ? { rule: live.rule, expiresAt: live.expiresAt } : {}),
    }
  }

  private settle(id: string, outcome: ApprovalOutcome): void {
    const pending = this.byId.get(id)
    if (!pending) return
    clearTimeout(pending.timer)
    this.byId.delete(id)
    this.byKey.delete(pending.key)
    this.options.log.info(
      {
        approval: id,
        host: pending.view.host,
        port: pending.view.port,
        answer: outcome.answer,
        by: outcome.by,
        waiting: pending.waiters.size,
        ...(outcome.rule ? { rule: outcome.rule } : {}),
      },
      'approval answered',
    )
    for (const waiter of [...pending.waiters]) waiter.resolve(outcome)
    this.changed()
  }

  /** Adds an allow rule to the policy in force; it is kept across policy replacements. */
  private addLiveRule(rule: string, id: string, given: { by: string; ttlMs?: number }): LiveRule {
    const expiresAt =
      given.ttlMs !== undefined ? new Date(Date.now() + given.ttlMs).toISOString() : null
    const live: LiveRule = { rule, id, by: given.by, expiresAt }
    const previous = this.live.get(rule)
    clearTimeout(previous?.timer)
    const entry: { rule: LiveRule; timer?: NodeJS.Timeout } = { rule: live }
    if (given.ttlMs !== undefined) {
      entry.timer = setTimeout(() => this.expire(rule, id), given.ttlMs)
      entry.timer.unref()
    }
    this.live.set(rule, entry)
    this.reapply()
    return live
  }

  private expire(rule: string, id: string): void {
    if (this.live.get(rule)?.rule.id !== id) return
    this.live.delete(rule)
    this.reapply()
    this.options.log.info({ rule, approval: id }, 'approved rule expired')
  }

  /** The live rules, for GET /approvals. */
  liveRules(): LiveRule[] {
    return [...this.live.values()].map((e) => e.rule)
  }

  /** A spec with the live rules in place of any it carried: what PUT /policy should install. */
  withLiveRules(spec: PolicySpec): PolicySpec {
    const allow: RuleSource[] = spec.allow.filter((r) => r.from !== APPROVAL_SOURCE)
    for (const { rule } of this.live.values())
      allow.push({ rule: rule.rule, from: APPROVAL_SOURCE })
    return { ...spec, allow }
  }

  private reapply(): void {
    const holder = this.options.policy
    holder.replace(
      compilePolicy(this.withLiveRules(holder.current.spec), this.options.operator),
      holder.source,
    )
  }

  /** Pending approvals, oldest first. */
  pending(): PendingApprovalView[] {
    return [...this.byId.values()].map((p) => ({ ...p.view, waiting: p.waiters.size }))
  }

  get size(): number {
    return this.byId.size
  }

  /** Held requests (waiters) right now. */
  get held(): number {
    return this.waiters
  }

  /**
   * Long poll: the pending list as soon as it differs from version `after`
   * (at once if it already does), or after `waitMs` when nothing changed.
   */
  async poll(
    after: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ version: number; pending: PendingApprovalView[] }> {
    if (this.version === after && waitMs > 0 && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          this.changeListeners.delete(done)
          signal?.removeEventListener('abort', done)
          resolve()
        }
        const timer = setTimeout(done, waitMs)
        this.changeListeners.add(done)
        signal?.addEventListener('abort', done, { once: true })
      })
    }
    return { version: this.version, pending: this.pending() }
  }

  private changed(): void {
    this.version++
    for (const listener of [...this.changeListeners]) listener()
  }

  /** Ends every wait (proxy shutdown): held requests are denied. */
  close(): void {
    for (const id of [...this.byId.keys()])
      this.settle(id, { id, answer: 'deny', by: 'isorun: the proxy is stopping' })
    for (const entry of this.live.values()) clearTimeout(entry.timer)
  }
}

/**
 * The decision a held request ends with: an `ask` decision turned into an
 * allow (`once`, `sandbox`) or a deny (`deny`, `timeout`). The hold stage logs
 * it with `approval: { id, answer, by }`.
 */
export function decisionAfterApproval(decision: Decision, outcome: ApprovalOutcome): Decision {
  const base = {
    host: decision.host,
    port: decision.port,
    from: outcome.answer === 'sandbox' ? APPROVAL_SOURCE : null,
  }
  switch (outcome.answer) {
    case 'once':
    case 'sandbox':
      return {
        ...base,
        action: 'allow',
        reason: 'allowed-by-approval',
        rule: outcome.rule ?? `approval:${outcome.id}`,
        detail: `${outcome.answer === 'once' ? 'allowed once' : 'allowed for the sandbox'} by ${outcome.by}`,
      }
    case 'deny':
      return {
        ...base,
        action: 'deny',
        reason: 'approval-denied',
        rule: null,
        detail: `denied by ${outcome.by}`,
      }
    case 'timeout':
      return { ...base, action: 'deny', reason: 'approval-timeout', rule: null, detail: outcome.by }
  }
}

/** What the decision log keeps of an outcome. */
export function approvalRecord(outcome: ApprovalOutcome): ApprovalRecord {
  return { id: outcome.id, answer: outcome.answer, by: outcome.by }
}
