// How a refusal looks on each path. The same decision stands behind all of
// them: an HTTP 403 naming host, port, profile and rule with what to change; a
// SOCKS reply 0x02; a TLS access_denied alert for a tunnel whose ClientHello
// was refused after the tunnel opened; a closed connection otherwise.

import { adviseDecision, describeDecision, type Decision } from '../policy/index.js'
import { rawResponse } from './wire.js'

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
