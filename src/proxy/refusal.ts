// How a refusal looks on each path. The same decision stands behind all of
// them: an HTTP 403 naming host, port, profile and rule with what to change; a
// SOCKS reply 0x02; a TLS access_denied alert for a tunnel whose ClientHello
// was refused after the tunnel opened; a closed connection otherwise.

import { adviseDecision, describeDecision, formatDuration, type Decision } from '../policy/index.js'
import type { BudgetUsage } from './budgets.js'
import { rawResponse } from './wire.js'

export const BLOCKED_HEADER = 'X-Isorun-Error'
export const BLOCKED_VALUE = 'blocked-by-policy'
export const BUDGET_VALUE = 'budget-exceeded'

export function refusalText(decision: Decision, profile: string): string {
  const lines = [
    `isorun: blocked by egress policy`,
    `host: ${decision.host}`,
    `port: ${decision.port}`,
    `profile: ${profile}`,
    `rule: ${decision.rule ?? '(none)'}${decision.from ? ` (from profile ${decision.from})` : ''}`,
    `reason: ${decision.reason}: ${describeDecision(decision)}`,
  ]
  const advice = adviseDecision(decision, profile)
  if (advice) lines.push(advice)
  return `${lines.join('\n')}\n`
}

export function refusalHeaders(body: string): Record<string, string> {
  return { ...plainHeaders(body), [BLOCKED_HEADER]: BLOCKED_VALUE }
}

/**
 * A complete HTTP/1.1 refusal, for raw sockets (CONNECT refusals, HTTP inside a
 * tunnel): 403, or 400 when what the client sent could not be read.
 */
export function refusalResponse(
  decision: Decision,
  profile: string,
  status: 400 | 403 = 403,
): string {
  const body = refusalText(decision, profile)
  return rawResponse(status, refusalHeaders(body), body)
}

/** A fatal TLS alert record, access_denied (49): the client reports a refusal, not a network error. */
export const TLS_ACCESS_DENIED_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])

/** The headers of a plain-text response that closes the connection. */
export function plainHeaders(body: string): Record<string, string> {
  return {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    Connection: 'close',
  }
}

/** A complete plain-text HTTP/1.1 response that closes the connection, for raw sockets. */
export function plainResponse(status: number, body: string): string {
  return rawResponse(status, plainHeaders(body), body)
}

/** A request the proxy cannot take (400), with what is wrong. */
export function badRequestResponse(message: string): string {
  return plainResponse(400, `isorun: bad request: ${message}\n`)
}

/** A plain response for upstream failures (502/504) on HTTP paths. */
export function upstreamFailureResponse(status: 502 | 504, message: string): string {
  return plainResponse(status, `isorun: ${message}\n`)
}

/**
 * The 429 for a request whose budget is used up (plain or intercepted HTTP):
 * `X-Isorun-Error: budget-exceeded`, the usage in the body and in
 * `X-Isorun-Budget-*` headers, and `Retry-After` for a windowed budget.
 */
export function budgetRefusalReply(
  decision: Decision,
  budget: BudgetUsage,
  profile: string,
): { status: 429; headers: Record<string, string>; body: string } {
  const limits = budget.limits
  const lines = [
    'isorun: budget exceeded',
    `host: ${decision.host}`,
    `port: ${decision.port}`,
    `profile: ${profile}`,
    `limit: ${budget.pattern}${limits.windowMs !== undefined ? ` per ${formatDuration(limits.windowMs)}` : ' (lifetime)'}`,
    `used: upload ${budget.up}${limits.upload !== undefined ? ` of ${limits.upload}` : ''} bytes, download ${budget.down}${limits.download !== undefined ? ` of ${limits.download}` : ''} bytes, ${budget.requests}${limits.requests !== undefined ? ` of ${limits.requests}` : ''} requests`,
    `reason: budget-exceeded: ${decision.detail ?? describeDecision(decision)}`,
  ]
  const advice = adviseDecision(decision, profile)
  if (advice) lines.push(advice)
  const body = `${lines.join('\n')}\n`
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    [BLOCKED_HEADER]: BUDGET_VALUE,
    'X-Isorun-Budget-Pattern': budget.pattern,
    'X-Isorun-Budget-Used': `up=${budget.up}; down=${budget.down}; requests=${budget.requests}`,
    Connection: 'close',
  }
  // A rolling window frees room as it moves: a bucket's length is the soonest a retry can help.
  if (limits.windowMs !== undefined)
    headers['Retry-After'] = String(Math.max(1, Math.ceil(limits.windowMs / 60 / 1000)))
  return { status: 429, headers, body }
}

/** The same 429 as a complete HTTP/1.1 response, for raw sockets (HTTP inside a tunnel). */
export function budgetRefusalResponse(
  decision: Decision,
  budget: BudgetUsage,
  profile: string,
): string {
  const { status, headers, body } = budgetRefusalReply(decision, budget, profile)
  return rawResponse(status, headers, body)
}
