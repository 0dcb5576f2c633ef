// The runner's approval broker: long-polls every sandbox proxy's pending
// approvals, fans new ones out to subscribers (the SDK's and CLI's streams)
// and to the operator's webhook, and routes answers back to the right proxy.
// An approval id is unique across the runner (the proxy makes it random), so
// `answer(id)` needs no sandbox. Every answer is logged with who gave it.

import type { ApprovalDecisionRequest, ApprovalResult, PendingApproval } from 'isorun'
import type { PendingApprovalView } from '../proxy/approvals.js'
import { sendWebhook, type WebhookConfig } from './approval-webhook.js'
import { ProxyAdminError, type ProxyAdmin } from './proxy-admin.js'
import { SandboxError, type ManagerLogger } from './sandboxes.js'

/** Where the broker finds proxies: every sandbox with its admin client now. */
export type ProxySource = () => Iterable<{ readonly id: string; readonly admin: ProxyAdmin }>

/** What subscribers receive. */
export type ApprovalEvent =
  | { readonly type: 'pending'; readonly approval: PendingApproval }
  | {
      readonly type: 'resolved'
      readonly id: string
      readonly sandbox: string
      /** Known when the answer came through this runner. */
      readonly answer?: string
      readonly by?: string
    }

export interface BrokerOptions {
  readonly proxies: ProxySource
  readonly log: ManagerLogger
  readonly webhook?: WebhookConfig
  /** How long one long poll waits at the proxy. */
  readonly pollWaitMs?: number
  /** How often the set of sandboxes is looked at. */
  readonly syncIntervalMs?: number
}

const RETRY_MS = 1000

interface Poller {
  readonly abort: AbortController
  /** Pending approvals of this sandbox, by id. */
  readonly pending: Map<string, PendingApproval>
}

export class ApprovalBroker {
  private readonly pollers = new Map<string, Poller>()
  private readonly listeners = new Set<(event: ApprovalEvent) => void>()
  /** Answers given through this runner, until the proxy drops the approval. */
  private readonly answered = new Map<string, { answer: string; by: string }>()
  private timer: NodeJS.Timeout | undefined
  private stopping: () => void = () => undefined
  /** Settles when the broker stops: long-lived streams end then, so the runner can close. */
  readonly stopped = new Promise<void>((resolve) => (this.stopping = resolve))

  constructor(private readonly options: BrokerOptions) {}

  start(): void {
    this.sync()
    this.timer = setInterval(() => this.sync(), this.options.syncIntervalMs ?? 1000)
    this.timer.unref()
  }

  stop(): void {
    this.stopping()
    clearInterval(this.timer)
    for (const poller of this.pollers.values()) poller.abort.abort()
    this.pollers.clear()
  }

  /** Starts polling new sandboxes and stops polling removed ones. */
  sync(): void {
    const live = new Map<string, ProxyAdmin>()
    for (const { id, admin } of this.options.proxies()) live.set(id, admin)
    for (const [id, poller] of this.pollers) {
      if (live.has(id)) continue
      poller.abort.abort()
      this.pollers.delete(id)
      for (const approvalId of poller.pending.keys()) this.resolved(approvalId, id)
    }
    for (const id of live.keys()) {
      if (this.pollers.has(id)) continue
      const poller: Poller = { abort: new AbortController(), pending: new Map() }
      this.pollers.set(id, poller)
      void this.poll(id, poller)
    }
  }

  private async poll(sandbox: string, poller: Poller): Promise<void> {
    let after = -1
    let failing = false
    const signal = poller.abort.signal
    while (!signal.aborted) {
      // The admin client is looked up each time: a restarted proxy gets a new one.
      const admin = [...this.options.proxies()].find((p) => p.id === sandbox)?.admin
      if (!admin) return
      try {
        const result = await admin.approvals(after, this.options.pollWaitMs ?? 25_000, signal)
        failing = false
        after = result.version
        this.update(sandbox, poller, result.pending)
      } catch (err) {
        if (signal.aborted) return
        if (!failing)
          this.options.log.warn(
            { sandbox, error: (err as Error).message },
            'cannot read pending approvals from the proxy; retrying',
          )
        failing = true
        after = -1
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, RETRY_MS)
          signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true })
        })
      }
    }
  }

  private update(sandbox: string, poller: Poller, pending: readonly PendingApprovalView[]): void {
    const seen = new Set<string>()
    for (const view of pending) {
      seen.add(view.id)
      const approval: PendingApproval = { ...view, sandbox }
      const isNew = !poller.pending.has(view.id)
      poller.pending.set(view.id, approval)
      if (isNew) {
        this.emit({ type: 'pending', approval })
        if (this.options.webhook) void this.notifyWebhook(this.options.webhook, approval)
      }
    }
    for (const id of [...poller.pending.keys()]) {
      if (seen.has(id)) continue
      poller.pending.delete(id)
      this.resolved(id, sandbox)
    }
  }

  private resolved(id: string, sandbox: string): void {
    const answer = this.answered.get(id)
    this.answered.delete(id)
    this.emit({ type: 'resolved', id, sandbox, ...(answer ?? {}) })
  }

  private async notifyWebhook(webhook: WebhookConfig, approval: PendingApproval): Promise<void> {
    try {
      const reply = await sendWebhook(webhook, approval)
      if (!reply) return
      await this.answer(approval.id, {
        answer: reply.answer,
        ...(reply.ttlMs !== undefined ? { ttlMs: reply.ttlMs } : {}),
        by: `webhook${reply.by ? `:${reply.by}` : ''}`,
      })
    } catch (err) {
      this.options.log.warn(
        { approval: approval.id, sandbox: approval.sandbox, error: (err as Error).message },
        'the approval webhook failed; the approval waits for another answer or its timeout',
      )
    }
  }

  private emit(event: ApprovalEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event)
      } catch {
        // One subscriber's failure must not stop the others.
      }
    }
  }

  /** Events from now on; the caller gets the current pending list from `pending()` first. */
  subscribe(listener: (event: ApprovalEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Every pending approval (optionally of one sandbox), oldest first. */
  pending(sandbox?: string): PendingApproval[] {
    const out: PendingApproval[] = []
    for (const [id, poller] of this.pollers)
      if (sandbox === undefined || id === sandbox) out.push(...poller.pending.values())
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt))
  }

  /** Answers an approval at the proxy that holds it. */
  async answer(
    id: string,
    request: ApprovalDecisionRequest & { by: string },
  ): Promise<ApprovalResult & { sandbox: string }> {
    const sandbox = this.sandboxOf(id)
    const admin = [...this.options.proxies()].find((p) => p.id === sandbox)?.admin
    if (!sandbox || !admin)
      throw new SandboxError(
        404,
        'approval-not-found',
        `no pending approval ${id}: it was answered, timed out, or never existed (isorun approvals lists the pending ones)`,
      )
    let result: ApprovalResult
    try {
      result = await admin.answerApproval(id, request)
    } catch (err) {
      if (err instanceof ProxyAdminError && err.status !== undefined && err.status < 500)
        throw new SandboxError(err.status, err.code ?? 'invalid-answer', err.message)
      throw new SandboxError(
        502,
        'proxy-unreachable',
        `cannot answer approval ${id}: the egress proxy of sandbox ${sandbox} does not answer (${(err as Error).message})`,
      )
    }
    this.answered.set(id, { answer: result.answer, by: result.by })
    this.options.log.info(
      { sandbox, approval: id, answer: result.answer, by: result.by, rule: result.rule },
      'approval answered',
    )
    return { ...result, sandbox }
  }

  private sandboxOf(id: string): string | undefined {
    for (const [sandbox, poller] of this.pollers) if (poller.pending.has(id)) return sandbox
    return undefined
  }
}
