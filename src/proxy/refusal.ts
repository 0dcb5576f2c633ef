// How a refusal looks on each path. The same decision stands behind all of
// them: an HTTP 403 naming host, port, profile and rule with what to change; a
// SOCKS reply 0x02; a TLS access_denied alert for a tunnel whose ClientHello
// was refused after the tunnel opened; a closed connection otherwise.

import { STATUS_CODES } from 'node:http'
import { adviseDecision, describeDecision, type Decision } from '../policy/index.js'

export const BLOCKED_HEADER = 'X-Isorun-Error'
export const BLOCKED_VALUE = 'blocked-by-policy'

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
  return {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    [BLOCKED_HEADER]: BLOCKED_VALUE,
    Connection: 'close',
  }
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
  const headers = Object.entries(refusalHeaders(body))
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')
  return `HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Forbidden'}\r\n${headers}\r\n${body}`
}

/** A fatal TLS alert record, access_denied (49): the client reports a refusal, not a network error. */
export const TLS_ACCESS_DENIED_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])

/** A complete plain-text HTTP/1.1 response that closes the connection, for raw sockets. */
export function plainResponse(status: number, body: string): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
}

/** A request the proxy cannot take (400), with what is wrong. */
export function badRequestResponse(message: string): string {
  return plainResponse(400, `isorun: bad request: ${message}\n`)
}

/** A plain response for upstream failures (502/504) on HTTP paths. */
export function upstreamFailureResponse(status: 502 | 504, message: string): string {
  return plainResponse(status, `isorun: ${message}\n`)
}
