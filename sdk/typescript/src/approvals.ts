// Approvals in the SDK: `isorun.approvals()` iterates over requests held by
// sandboxes with `onUnknown: 'ask'`, across sandboxes (or one), as they come;
// each can be answered on the spot. `sandbox.onApproval(handler)` answers a
// sandbox's requests with a function.

import { readNdjson } from './process.js'
import type { ApprovalDecisionRequest, ApprovalResult, PendingApproval } from './types.js'

/** What the SDK needs of the client (kept narrow so this module has no cycle to client.ts). */
export interface ApprovalClient {
  request<T>(method: string, path: string, body?: unknown): Promise<T>
  open(method: string, path: string, options?: { timeoutMs?: number }): Promise<Response>
}

/** A held request, with its answers. Answering one that is gone throws an IsorunApiError (404). */
export class Approval implements PendingApproval {
  readonly id: string
  readonly sandbox: string
  readonly protocol: PendingApproval['protocol']
  readonly host: string
  readonly port: number
  readonly method?: string
  readonly path?: string
  readonly rule: string
  readonly waiting: number
  readonly createdAt: string
  readonly expiresAt: string

  constructor(
    private readonly client: ApprovalClient,
    pending: PendingApproval,
  ) {
    this.id = pending.id
    this.sandbox = pending.sandbox
    this.protocol = pending.protocol
    this.host = pending.host
    this.port = pending.port
    if (pending.method !== undefined) this.method = pending.method
    if (pending.path !== undefined) this.path = pending.path
    this.rule = pending.rule
    this.waiting = pending.waiting
    this.createdAt = pending.createdAt
    this.expiresAt = pending.expiresAt
  }

  /** Lets the held request (and identical ones held with it) through; the next one asks again. */
  allowOnce(by?: string): Promise<ApprovalResult> {
    return answerApproval(this.client, this.id, { answer: 'once', ...(by ? { by } : {}) })
  }

  /** Adds `rule` to the sandbox's policy live, for `ttlMs` if given. */
  allowForSandbox(options: { ttlMs?: number; by?: string } = {}): Promise<ApprovalResult> {
    return answerApproval(this.client, this.id, { answer: 'sandbox', ...options })
  }

  deny(by?: string): Promise<ApprovalResult> {
    return answerApproval(this.client, this.id, { answer: 'deny', ...(by ? { by } : {}) })
  }

  toJSON(): PendingApproval {
    const { client: _client, ...fields } = this
    return fields
  }
}

export function answerApproval(
  client: ApprovalClient,
  id: string,
  request: ApprovalDecisionRequest,
): Promise<ApprovalResult> {
  return client.request<ApprovalResult>('POST', `/v1/approvals/${encodeURIComponent(id)}`, {
    by: 'sdk',
    ...request,
  })
}

type StreamEvent =
  | { type: 'pending'; approval: PendingApproval }
  | { type: 'resolved'; id: string }
  | { type: 'heartbeat' }

/**
 * Pending approvals as they come (those already pending first), until `signal`
 * aborts or the loop breaks. Each approval is yielded once.
 */
export async function* streamApprovals(
  client: ApprovalClient,
  options: { sandbox?: string; signal?: AbortSignal } = {},
): AsyncGenerator<Approval> {
  const query = options.sandbox ? `?sandbox=${encodeURIComponent(options.sandbox)}` : ''
  const response = await client.open('GET', `/v1/approvals/stream${query}`, { timeoutMs: 0 })
  const stop = (): void => void response.body?.cancel().catch(() => undefined)
  options.signal?.addEventListener('abort', stop, { once: true })
  // Ids yielded and not yet resolved: the stream may repeat a pending approval.
  const seen = new Set<string>()
  try {
    if (options.signal?.aborted) return
    for await (const event of readNdjson<StreamEvent>(response)) {
      if (event.type === 'resolved') seen.delete(event.id)
      if (event.type !== 'pending' || seen.has(event.approval.id)) continue
      seen.add(event.approval.id)
      yield new Approval(client, event.approval)
    }
  } catch (err) {
    // Cancelling the body on abort ends the read with an error: that is the way out.
    if (!options.signal?.aborted) throw err
  } finally {
    options.signal?.removeEventListener('abort', stop)
    stop()
  }
}

/** What an approval handler returns: an answer, or nothing to leave the request pending. */
export type ApprovalHandlerResult =
  | 'once'
  | 'sandbox'
  | 'deny'
  | { answer: 'once' | 'sandbox' | 'deny'; ttlMs?: number; by?: string }
  | undefined
  | void

export type ApprovalHandler = (
  approval: Approval,
) => ApprovalHandlerResult | Promise<ApprovalHandlerResult>

/** A running `onApproval` subscription. */
export interface ApprovalSubscription {
  /** Stops handling; pending requests wait for another answer or their timeout. */
  stop(): void
  /** Settles when the subscription ends: after stop(), or with the stream's error. */
  readonly done: Promise<void>
}

export function handleApprovals(
  client: ApprovalClient,
  sandbox: string,
  handler: ApprovalHandler,
): ApprovalSubscription {
  const controller = new AbortController()
  const done = (async () => {
    for await (const approval of streamApprovals(client, { sandbox, signal: controller.signal })) {
      // Each approval is handled on its own: a slow handler does not hold up the next one.
      void (async () => {
        const result = await handler(approval)
        if (result === undefined) return
        const request = typeof result === 'string' ? { answer: result } : result
        await answerApproval(client, approval.id, { by: 'sdk:onApproval', ...request })
      })().catch(() => undefined)
    }
  })()
  return { stop: () => controller.abort(), done }
}
