// Human-readable text for a decision: what happened and what to change. Used by
// the proxy's 403 body, `isorun check` and the CLI's event listings. Kept apart
// from decide() so the hot path builds no strings.

import type { Decision, Reason } from './decide.js'
import { joinAuthority } from './authority.js'
import { RAW_PREFIX } from './rule.js'

const WHY: Record<Reason, string> = {
  'allowed-by-rule': 'allowed by rule',
  'allowed-by-mode': 'allowed: the profile allows everything not denied',
  'endpoint-allowed': 'allowed by endpoint rule',
  'denied-by-rule': 'denied by rule',
  'denied-by-mode': 'denied: the profile denies everything',
  'not-in-allow-list': 'denied: no allow rule matches',
  'invalid-host': 'denied: not a valid host',
  'invalid-port': 'denied: not a valid port',
  'special-address': 'denied: special-purpose address',
  'no-sni': 'denied: the TLS ClientHello names no server (no SNI)',
  'sni-mismatch': 'denied: the TLS server name (SNI) does not match the target',
  'ech-refused':
    'denied: the ClientHello uses Encrypted Client Hello, which hides the real server name',
  'bad-client-hello': 'denied: the TLS ClientHello could not be parsed',
  'host-mismatch': 'denied: the HTTP Host header does not match the target',
  'unreadable-payload':
    'denied: not TLS or HTTP the proxy could read, and no tcp: rule allows raw TCP here',
  'h2c-prior-knowledge-unsupported':
    'denied: HTTP/2 without TLS (prior knowledge) is not supported; use HTTP/1.1 or HTTPS',
  'upgrade-refused': 'denied: only WebSocket upgrades are forwarded',
  'endpoint-denied': 'denied by endpoint rule',
  'no-endpoint-match': 'denied: the host has endpoint rules and none matches this request',
  'bad-path': 'denied: ambiguous request path',
  'method-override':
    'denied: the request overrides its method or path (header or _method parameter), which endpoint rules cannot check',
  'dns-type-refused': 'denied: only A and AAAA questions are answered',
  'allowed-by-approval': 'allowed: approved while it was held',
  'approval-denied': 'denied: no rule allows it, and the approval request was denied',
  'approval-timeout': 'denied: no rule allows it, and nobody answered the approval request in time',
  'budget-exceeded': "denied: the destination's budget is used up",
  'bad-dns-query':
    'denied: a DNS query the proxy does not serve (malformed, not exactly one question of class IN, or not a host name)',
}

const FIX: Partial<Record<Reason, (d: Decision, profile: string) => string>> = {
  'not-in-allow-list': (d, p) =>
    `To allow it, add "${hostRule(d)}" to the allow list of profile ${p}, or use a profile that includes it.`,
  'denied-by-mode': (d) =>
    `This profile blocks all egress; choose a profile or network allow list that includes "${hostRule(d)}".`,
  'denied-by-rule': (d) =>
    `Remove or narrow the deny rule ${d.rule ?? ''}${d.from ? ` (from profile ${d.from})` : ''}.`,
  'special-address': () =>
    'Names that resolve to loopback, private, link-local or other special ranges are refused; an operator can allow a range with --allow-private (ISORUN_ALLOW_PRIVATE for the runner).',
  'no-sni': () => 'Connect by host name so the client sends SNI.',
  'sni-mismatch': () => 'Connect to the same host you name in TLS.',
  'ech-refused': () => 'Disable Encrypted Client Hello in the client.',
  'host-mismatch': () => 'Send a Host header that names the host you connect to.',
  'unreadable-payload': (d) =>
    d.host === ''
      ? 'Send HTTP/1.1 or TLS; other protocols need a tcp: rule and a tunnel (CONNECT or SOCKS).'
      : `To allow raw TCP (SSH, SMTP, databases) to this port, add the rule "${RAW_PREFIX}${hostPort(d)}".`,
  'upgrade-refused': () =>
    'Send the request without an Upgrade header (HTTP/2 needs HTTPS), or use WebSocket.',
  'method-override': () =>
    'Send the method and path in the request line, without X-HTTP-Method-Override or _method.',
  'no-endpoint-match': (_d, p) => `Add an endpoint rule for this method and path to profile ${p}.`,
  'approval-timeout': () =>
    'Answer pending approvals with `isorun approvals` / `isorun approve ID`, the SDK or the webhook, or allow the host in the profile.',
  'approval-denied': (d, p) =>
    `To allow it for good, add "${hostRule(d)}" to the allow list of profile ${p}.`,
  'budget-exceeded': (d) =>
    `Raise the limit for ${d.rule ?? 'this destination'} in the profile's limits, or wait for its window to pass.`,
}

function hostRule(d: Decision): string {
  const needsPort = d.port !== 0 && d.port !== 80 && d.port !== 443
  return needsPort ? hostPort(d) : d.host
}

/** `host:port` as the rule grammar reads it: an IPv6 address needs brackets before a port. */
function hostPort(d: Decision): string {
  return joinAuthority(d.host, d.port)
}

/** One line: `denied: no allow rule matches` plus the rule and specifics. */
export function describeDecision(d: Decision): string {
  let text = WHY[d.reason]
  if (
    d.rule &&
    (d.reason === 'allowed-by-rule' ||
      d.reason === 'denied-by-rule' ||
      d.reason.startsWith('endpoint-'))
  ) {
    text += ` ${d.rule}`
    if (d.from) text += ` (from profile ${d.from})`
  }
  if (d.detail) text += ` (${d.detail})`
  if (d.wouldDeny) {
    const w = d.wouldDeny
    text += `; report mode: the rules would refuse it (${w.reason}${w.rule ? ` ${w.rule}` : ''}${w.detail ? `, ${w.detail}` : ''})`
  }
  return text
}

/** What to change to get a different answer, or undefined when there is no general advice. */
export function adviseDecision(d: Decision, profile: string): string | undefined {
  return FIX[d.reason]?.(d, profile)
}
