// The operator's approval webhook: each new pending approval is POSTed to
// ISORUN_APPROVAL_WEBHOOK_URL, signed with HMAC-SHA256 over
// `${timestamp}.${body}` with ISORUN_APPROVAL_WEBHOOK_SECRET. The receiver
// answers in its response body (`{ "answer": "once" | "sandbox" | "deny",
// "ttlMs"?, "by"? }`), or later through the answer URL in the payload (the
// runner's POST /v1/approvals/:id, with the API key). A receiver rejects
// requests whose timestamp is more than 5 minutes off (replay).

import { createHmac, timingSafeEqual } from 'node:crypto'
import type { ApprovalDecisionRequest, PendingApproval } from 'isorun'

export const SIGNATURE_HEADER = 'X-Isorun-Signature'
export const TIMESTAMP_HEADER = 'X-Isorun-Timestamp'
/** How far a timestamp may be from the receiver's clock. */
export const SIGNATURE_TOLERANCE_S = 300

export interface WebhookConfig {
  readonly url: string
  readonly secret: string
  /** The runner's URL as the receiver reaches it, for answer URLs. */
  readonly publicUrl: string
}

/** What the webhook receives. */
export interface WebhookPayload {
  readonly type: 'approval.requested'
  readonly approval: PendingApproval
  /** POST `{ answer, ttlMs?, by? }` here (with the runner's API key) to answer later. */
  readonly answerUrl: string
}

/** `sha256=<hex>` over `${timestamp}.${body}`. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`
}

/** Checks a received webhook: the signature matches and the timestamp is recent. */
export function verifyWebhook(
  secret: string,
  headers: { timestamp: string | undefined; signature: string | undefined },
  body: string,
  nowMs: number = Date.now(),
): boolean {
  const { timestamp, signature } = headers
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return false
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > SIGNATURE_TOLERANCE_S) return false
  const expected = Buffer.from(signWebhook(secret, timestamp, body))
  const given = Buffer.from(signature)
  return expected.length === given.length && timingSafeEqual(expected, given)
}

/**
 * Sends one pending approval; resolves with the answer in the response body,
 * if the receiver gave one. Throws when the receiver cannot be reached or
 * answers with an error status.
 */
export async function sendWebhook(
  config: WebhookConfig,
  approval: PendingApproval,
  nowMs: number = Date.now(),
): Promise<(ApprovalDecisionRequest & { by?: string }) | undefined> {
  const payload: WebhookPayload = {
    type: 'approval.requested',
    approval,
    answerUrl: `${config.publicUrl.replace(/\/+$/, '')}/v1/approvals/${encodeURIComponent(approval.id)}`,
  }
  const body = JSON.stringify(payload)
  const timestamp = String(Math.floor(nowMs / 1000))
  const res = await fetch(config.url, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      [TIMESTAMP_HEADER]: timestamp,
      [SIGNATURE_HEADER]: signWebhook(config.secret, timestamp, body),
    },
    body,
    signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`the webhook answered ${res.status}`)
  if (text.trim() === '') return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined // a plain "ok": the receiver answers later
  }
  const answer = (parsed as { answer?: unknown } | null)?.answer
  if (answer === undefined) return undefined
  if (answer !== 'once' && answer !== 'sandbox' && answer !== 'deny')
    throw new Error(
      `the webhook answered with "answer": ${JSON.stringify(answer)}; use once, sandbox or deny`,
    )
  const { ttlMs, by } = parsed as { ttlMs?: unknown; by?: unknown }
  return {
    answer,
    ...(typeof ttlMs === 'number' ? { ttlMs } : {}),
    ...(typeof by === 'string' ? { by } : {}),
  }
}
