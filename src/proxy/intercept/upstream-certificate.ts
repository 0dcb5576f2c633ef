// An intercepted request whose server certificate does not verify (against the
// system roots plus the operator's CAs, for the checked name) is a refusal with
// its own reason, `upstream-certificate`: logged as such, answered 502 with
// `X-Isorun-Error: upstream-certificate`, never retried without verification.

import { isIP } from 'node:net'
import type { Decision } from '../../policy/index.js'
import { BLOCKED_HEADER, plainHeaders, refusalText } from '../refusal.js'
import type { UpstreamTls } from '../origin-pools.js'
import type { ProxyContext } from '../context.js'

/** OpenSSL's verification errors as Node reports them, and Node's own name check. */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

export const UPSTREAM_CERTIFICATE = 'upstream-certificate'

/** Whether an upstream error is a failed certificate verification. */
export function isCertificateError(err: { code?: unknown }): boolean {
  return typeof err.code === 'string' && CERTIFICATE_ERRORS.has(err.code)
}

/** The refusal of a request whose server did not prove it is `decision.host`. */
export function upstreamCertificateRefusal(decision: Decision, code: string): Decision {
  return {
    action: 'deny',
    reason: 'upstream-certificate',
    rule: decision.rule,
    from: decision.from,
    host: decision.host,
    port: decision.port,
    detail: code,
  }
}

/** The 502 for it, in the style of every other refusal (header, plain-text body). */
export function upstreamCertificateAnswer(
  decision: Decision,
  profile: string,
): { status: number; headers: Record<string, string>; body: string } {
  const body = refusalText(decision, profile)
  return {
    status: 502,
    headers: { ...plainHeaders(body), [BLOCKED_HEADER]: UPSTREAM_CERTIFICATE },
    body,
  }
}

/** How an intercepted host's upstream is verified: its name, the system roots plus the operator's CAs. */
export function upstreamTlsFor(ctx: ProxyContext, host: string): UpstreamTls {
  return {
    servername: isIP(host) === 0 ? host : undefined,
    secureContext: ctx.interception.upstreamContext(),
  }
}
