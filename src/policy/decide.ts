// The one decision. Every ingress path (absolute-form HTTP, CONNECT, SOCKS5,
// transparent TLS and HTTP, DNS) describes what it saw as an EgressRequest and
// asks decide(); nothing else in isorun allows or refuses traffic. A path asks
// again each time it learns more (the ClientHello, the Host header, the
// resolved addresses); each answer covers everything seen so far.

import { matchEndpoint, overrideProblem, pathProblem, requestPath } from './endpoint.js'
import { splitAuthority } from './authority.js'
import { parseHost, type CanonicalHost } from './host.js'
import { formatIP, parseIP, unwrapIP, type IP } from './ip.js'
import { RuleMatch } from './matcher.js'
import type { Policy } from './policy.js'
import { classifyIP } from './special.js'

export type Protocol = 'http' | 'connect' | 'socks' | 'tls' | 'dns'

/** What a ClientHello told us, or that it could not be parsed. */
export type TlsObservation =
  | { readonly kind: 'client-hello'; readonly sni: string | null; readonly ech: boolean }
  | { readonly kind: 'invalid'; readonly error: string }

/**
 * What a connection carried that was not HTTP the proxy read: a TLS
 * ClientHello; bytes that are neither TLS nor HTTP the proxy could read; the
 * HTTP/2 connection preface without TLS ("prior knowledge"); or nothing from
 * the client because the server speaks first (SSH, SMTP, most databases).
 * Only `tls` travels without a `tcp:` rule.
 */
export type TunnelPayload = 'tls' | 'other' | 'h2-prior-knowledge' | 'server-first'

export interface EgressRequest {
  readonly protocol: Protocol
  /** The target as the client named it: a name or an IP literal in any spelling. */
  readonly host: string
  /** Destination port; ignored for DNS, where a name is answered if 443 or 80 is allowed. */
  readonly port: number
  /** Plain HTTP only. */
  readonly method?: string
  /** Plain HTTP only: the request target's path (a query is ignored). */
  readonly path?: string
  readonly tls?: TlsObservation
  /** The Host header of a plain HTTP request, which must name the target. */
  readonly hostHeader?: string
  /** The authority an absolute-form request target names, which must name the target too. */
  readonly targetAuthority?: string
  /** Plain HTTP only: the Upgrade header, when the request asks to switch protocols. */
  readonly upgrade?: string
  /** Plain HTTP only: the method or path override headers it carries (lowercase names). */
  readonly overrides?: readonly string[]
  readonly payload?: TunnelPayload
  /** The addresses the proxy is about to dial. */
  readonly resolved?: readonly string[]
  /** DNS only: the question type. Only A and AAAA are ever answered. */
  readonly queryType?: string
}

export type AllowReason =
  'allowed-by-rule' | 'allowed-by-mode' | 'endpoint-allowed' | 'allowed-by-approval'

/** Report mode: what the policy's rules would have decided about an allowed request. */
export interface WouldDeny {
  readonly reason: DenyReason
  readonly rule: string | null
  readonly from: string | null
  readonly detail?: string
}
export type DenyReason =
  | 'denied-by-rule'
  | 'denied-by-mode'
  | 'not-in-allow-list'
  | 'invalid-host'
  | 'invalid-port'
  | 'special-address'
  | 'no-sni'
  | 'sni-mismatch'
  | 'ech-refused'
  | 'bad-client-hello'
  | 'host-mismatch'
  | 'unreadable-payload'
  | 'h2c-prior-knowledge-unsupported'
  | 'upgrade-refused'
  | 'endpoint-denied'
  | 'no-endpoint-match'
  | 'bad-path'
  | 'method-override'
  | 'dns-type-refused'
  | 'approval-denied'
  | 'approval-timeout'
  | 'budget-exceeded'
  /** A DNS query the server rejects before any decision (malformed, not one IN question, …). */
  | 'bad-dns-query'
export type Reason = AllowReason | DenyReason

export interface Decision {
  readonly action: 'allow' | 'deny'
  readonly reason: Reason
  /** Canonical text of the deciding rule, `mode:<mode>` when the mode decided, null when no rule did. */
  readonly rule: string | null
  /** The profile the deciding rule came from. */
  readonly from: string | null
  /** Canonical host, or the raw text when it could not be canonicalised. */
  readonly host: string
  readonly port: number
  /** Specifics for the message: the SNI seen, the address refused, the parse error. */
  readonly detail?: string
  /** Report mode: the request was allowed, but the rules would have refused it. */
  readonly wouldDeny?: WouldDeny
  /**
   * `onUnknown: ask`: refused only because no rule allows it (every other check
   * passed), so the proxy may hold it and ask. Never set on a deny rule, a
   * special-purpose address or a protocol refusal. Code that does not ask sees a deny.
   */
  readonly ask?: true
}

/**
 * Refusals that report mode turns into would-deny: the rules' verdicts, and the
 * checks that exist only to make endpoint rules hold. Everything else (special
 * addresses, SNI and Host checks, unreadable payloads) refuses in every mode.
 */
const REPORTABLE: ReadonlySet<Reason> = new Set<Reason>([
  'denied-by-rule',
  'denied-by-mode',
  'not-in-allow-list',
  'endpoint-denied',
  'no-endpoint-match',
  'bad-path',
  'method-override',
])

/**
 * A refusal by the rules that the mode sets aside: kept as the would-deny in
 * report mode, or the one to ask about with `onUnknown: ask`.
 */
interface SetAside {
  held: Decision | undefined
}

/**
 * What the other modes use: nothing is ever set aside there, so no object per
 * decision; frozen, so a write by mistake throws rather than passes.
 */
const NOTHING_ASIDE: SetAside = Object.freeze({ held: undefined })

function asideFor(policy: Policy): SetAside {
  return policy.mode === 'report' || policy.onUnknown === 'ask'
    ? { held: undefined }
    : NOTHING_ASIDE
}

function setsAside(policy: Policy, refusal: Decision): boolean {
  return policy.mode === 'report'
    ? REPORTABLE.has(refusal.reason)
    : policy.onUnknown === 'ask' && refusal.reason === 'not-in-allow-list'
}

/** The final decision once the request passed every check that refuses in all modes. */
function settle(policy: Policy, decision: Decision, aside: SetAside): Decision {
  if (policy.mode === 'report') {
    const held =
      aside.held ??
      (decision.action === 'deny' && setsAside(policy, decision) ? decision : undefined)
    if (!held) return decision
    const wouldDeny: WouldDeny =
      held.detail === undefined
        ? { reason: held.reason as DenyReason, rule: held.rule, from: held.from }
        : {
            reason: held.reason as DenyReason,
            rule: held.rule,
            from: held.from,
            detail: held.detail,
          }
    return {
      action: 'allow',
      reason: 'allowed-by-mode',
      rule: 'mode:report',
      from: null,
      host: decision.host,
      port: decision.port,
      wouldDeny,
    }
  }
  // Ask: an explicit endpoint refusal stands; otherwise the unknown request is asked about.
  if (aside.held && decision.action !== 'deny') return { ...aside.held, ask: true }
  return decision
}

/**
 * What a decision is about: the target, once canonical (its text is what the
 * decision names), and the port. A target that could not be canonicalised has
 * only its text.
 */
interface Subject {
  readonly host?: CanonicalHost
  readonly text: string
  readonly port: number
}

/** A subject whose host is known to be canonical. */
interface Target extends Subject {
  readonly host: CanonicalHost
}

/** What a refusal names besides its reason: the rule and profile behind it, and specifics. */
interface Grounds {
  readonly rule?: string
  readonly from?: string
  readonly detail?: string
}

function deny(subject: Subject, reason: DenyReason, grounds: Grounds = {}): Decision {
  const decision: Decision = {
    action: 'deny',
    reason,
    rule: grounds.rule ?? null,
    from: grounds.from ?? null,
    host: subject.text,
    port: subject.port,
  }
  return grounds.detail === undefined ? decision : { ...decision, detail: grounds.detail }
}

/** Allowed by a rule, or by the allow-all mode when no rule is given. */
function allowedBy(subject: Subject, rule: RuleMatch | null, mode: string): Decision {
  return {
    action: 'allow',
    reason: rule ? 'allowed-by-rule' : 'allowed-by-mode',
    rule: rule ? rule.canonical : `mode:${mode}`,
    from: rule ? rule.from : null,
    host: subject.text,
    port: subject.port,
  }
}

/**
 * Deny rules first, then the mode: the refusal, or what allows the host (the
 * matching allow rule, or null when the allow-all mode does).
 */
function hostVerdict(policy: Policy, target: Target): Decision | RuleMatch | null {
  const denied = policy.deny.match(target.host, target.port)
  if (denied) return deny(target, 'denied-by-rule', { rule: denied.canonical, from: denied.from })
  switch (policy.mode) {
    case 'allow-all':
      return null
    case 'deny-all':
      return deny(target, 'denied-by-mode', { rule: `mode:${policy.mode}` })
    case 'allow-list':
    case 'report':
      return policy.allow.match(target.host, target.port) ?? deny(target, 'not-in-allow-list')
  }
}

function isRefusal(verdict: Decision | RuleMatch | null): verdict is Decision {
  return verdict !== null && !(verdict instanceof RuleMatch)
}

/** A refusal when an address is special-purpose and the operator has not allowed its range. */
function specialAddressRefusal(policy: Policy, ip: IP, subject: Subject): Decision | undefined {
  const unwrapped = unwrapIP(ip)
  const allowed = policy.allowSpecial.size > 0 ? policy.allowSpecial.first(unwrapped) : undefined
  const blocked = policy.blockAlways.size > 0 ? policy.blockAlways.first(unwrapped) : undefined
  if (blocked !== undefined) {
    // Only an allowance narrower than the block opens it (a mirror's own address, not `private`).
    if (allowed !== undefined && allowed.prefix > blocked.prefix) return undefined
    const why = `${formatIP(ip)} is in ${blocked.label}, one of isorun's own networks, which sandboxes never reach`
    return deny(subject, 'special-address', { detail: why })
  }
  const range = classifyIP(ip)
  if (!range) return undefined
  if (allowed !== undefined) return undefined
  return deny(subject, 'special-address', {
    detail: `${formatIP(ip)} is in ${range.cidr}, ${range.description}`,
  })
}

function tlsRefusal(
  policy: Policy,
  req: EgressRequest,
  target: Target,
  aside: SetAside,
): Decision | undefined {
  const tls = req.tls
  if (!tls) return undefined
  if (tls.kind === 'invalid') return deny(target, 'bad-client-hello', { detail: tls.error })
  if (tls.ech) return deny(target, 'ech-refused')
  if (tls.sni === null) return target.host.kind === 'name' ? deny(target, 'no-sni') : undefined
  const sni = parseHost(tls.sni)
  if (sni.kind === 'invalid') return deny(target, 'sni-mismatch', { detail: tls.sni })
  if (target.host.kind === 'name') {
    return sni.kind === 'name' && sni.name === target.host.name
      ? undefined
      : deny(target, 'sni-mismatch', { detail: tls.sni })
  }
  // An IP target allowed by an IP rule: a name in the SNI must be allowed in its own right.
  if (sni.kind !== 'name') return deny(target, 'sni-mismatch', { detail: tls.sni })
  const named = hostVerdict(policy, { host: sni, text: sni.name, port: target.port })
  if (!isRefusal(named)) return undefined
  if (policy.mode === 'report') {
    aside.held ??= { ...named, host: target.text, detail: `TLS server name ${sni.name}` }
    return undefined
  }
  return deny(target, 'sni-mismatch', { detail: tls.sni })
}

function hostHeaderRefusal(req: EgressRequest, target: Target): Decision | undefined {
  return authorityRefusal(req.hostHeader, target) ?? authorityRefusal(req.targetAuthority, target)
}

/** A refusal when an authority a request names (Host, absolute URI) is not the target. */
function authorityRefusal(header: string | undefined, target: Target): Decision | undefined {
  if (header === undefined) return undefined
  const authority = splitAuthority(header)
  const seen = authority ? parseHost(authority.host) : undefined
  const { host } = target
  const sameHost =
    seen?.kind === 'name'
      ? host.kind === 'name' && seen.name === host.name
      : seen?.kind === 'ip' && host.kind === 'ip' && seen.text === host.text
  const samePort = authority?.port === undefined || authority.port === target.port
  return sameHost && samePort ? undefined : deny(target, 'host-mismatch', { detail: header })
}

function endpointVerdict(policy: Policy, req: EgressRequest, target: Target): Decision | undefined {
  const { host } = target
  if (
    req.method === undefined ||
    req.path === undefined ||
    host.kind !== 'name' ||
    policy.endpoints.size === 0
  )
    return undefined
  const set = policy.endpoints.lookup(host.name)
  if (!set) return undefined
  const path = requestPath(req.path)
  const request = `${req.method} ${path}`
  const problem = pathProblem(path)
  if (problem) return deny(target, 'bad-path', { from: set.from, detail: `${path} ${problem}` })
  const override = overrideProblem(req.path, req.overrides)
  if (override)
    return deny(target, 'method-override', { from: set.from, detail: `${request} ${override}` })
  const match = matchEndpoint(set, req.method, path)
  if (match.rule === undefined)
    return deny(target, 'no-endpoint-match', { from: set.from, detail: request })
  const rule = `${set.host} ${match.rule}`
  if (match.action === 'deny')
    return deny(target, 'endpoint-denied', { rule, from: match.from, detail: request })
  return {
    action: 'allow',
    reason: 'endpoint-allowed',
    rule,
    from: match.from,
    host: target.text,
    port: target.port,
  }
}

function resolvedRefusal(
  policy: Policy,
  req: EgressRequest,
  target: Target,
  aside: SetAside,
): Decision | undefined {
  for (const address of req.resolved ?? []) {
    const ip = parseIP(address)
    if (!ip)
      return deny(target, 'special-address', {
        detail: `resolver returned "${address}", which is not an IP address`,
      })
    // A mapped, NAT64 or 6to4 address reaches the IPv4 host inside it: match rules on that.
    const denied = policy.deny.matchAddress(unwrapIP(ip), target.port)
    if (denied) {
      const refusal = deny(target, 'denied-by-rule', {
        rule: denied.canonical,
        from: denied.from,
        detail: `resolves to ${formatIP(ip)}`,
      })
      if (policy.mode !== 'report') return refusal
      aside.held ??= refusal
    }
    const special = specialAddressRefusal(policy, ip, target)
    if (special) return special
  }
  return undefined
}

/**
 * Decides one request against one policy. Order: the host must be valid; deny
 * rules beat allow rules, then the mode; an IP target or any resolved address
 * must not be special-purpose (unless the operator allows the range); the TLS
 * SNI or HTTP Host must name the target; a tunnel whose content cannot be
 * inspected needs a rule that names its port; endpoint rules narrow plain HTTP.
 */
export function decide(req: EgressRequest, policy: Policy): Decision {
  const port = req.protocol === 'dns' ? 0 : req.port
  if (req.host === '') {
    // No target was named and nothing readable named one (transparent TLS without a
    // ClientHello, an HTTP server's client that sent no readable request).
    const nothing: Subject = { text: '', port }
    if (req.tls?.kind === 'client-hello' && req.tls.sni === null) return deny(nothing, 'no-sni')
    const unreadable = payloadRefusal(req.payload, nothing)
    if (unreadable) return unreadable
  }
  const parsed = parseHost(req.host)
  if (parsed.kind === 'invalid') {
    const shown = req.host.length > 64 ? `${req.host.slice(0, 64)}…` : req.host
    return deny({ text: shown, port }, 'invalid-host', {
      detail: `invalid host "${shown}": ${parsed.why}`,
    })
  }
  const text = parsed.kind === 'name' ? parsed.name : parsed.text
  if (req.protocol === 'dns') return decideDns(req, policy, { host: parsed, text, port: 0 })

  const target: Target = { host: parsed, text, port }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return deny(target, 'invalid-port', {
      detail: `port ${String(req.port)} is not between 1 and 65535`,
    })
  }
  let verdict = hostVerdict(policy, target)
  const aside = asideFor(policy)
  if (isRefusal(verdict)) {
    if (!setsAside(policy, verdict)) return verdict
    // Report mode and ask go on: a special address or a protocol refusal still refuses.
    aside.held = verdict
    verdict = null
  }
  if (parsed.kind === 'ip') {
    const special = specialAddressRefusal(policy, parsed.ip, target)
    if (special) return special
  }
  const refusal =
    tlsRefusal(policy, req, target, aside) ??
    hostHeaderRefusal(req, target) ??
    upgradeRefusal(req, target) ??
    rawRefusal(policy, req, target) ??
    resolvedRefusal(policy, req, target, aside)
  if (refusal) return refusal
  const decision = endpointVerdict(policy, req, target) ?? allowedBy(target, verdict, policy.mode)
  return aside.held || policy.mode === 'report' ? settle(policy, decision, aside) : decision
}

/**
 * A DNS question: only address questions are answered (TXT, MX, HTTPS and the
 * rest would carry data, not steer traffic), and a name is answered when 443 or
 * 80 is allowed, the ports of the transparent listeners the answer steers to.
 * Report mode and ask answer a name the rules refuse (ask: the DNS listener holds it).
 */
function decideDns(req: EgressRequest, policy: Policy, question: Target): Decision {
  if (req.queryType !== undefined && req.queryType !== 'A' && req.queryType !== 'AAAA')
    return deny(question, 'dns-type-refused', { detail: `${req.queryType} query` })
  let verdict = hostVerdict(policy, { ...question, port: 443 })
  if (isRefusal(verdict)) verdict = hostVerdict(policy, { ...question, port: 80 })
  if (isRefusal(verdict) && setsAside(policy, verdict)) {
    const aside = asideFor(policy)
    aside.held = { ...verdict, port: 0 }
    return settle(policy, allowedBy(question, null, policy.mode), aside)
  }
  return { ...(isRefusal(verdict) ? verdict : allowedBy(question, verdict, policy.mode)), port: 0 }
}

/**
 * Only WebSocket is spliced after an upstream's 101: any other protocol (h2c
 * above all) would let the client speak, unread, to an allowed server, e.g.
 * HTTP/2 requests naming other hosts. (The forwarder serves such a request
 * without its upgrade headers when it can; what it asks about here is refused.)
 */
function upgradeRefusal(req: EgressRequest, target: Target): Decision | undefined {
  if (req.upgrade === undefined || req.upgrade.trim().toLowerCase() === 'websocket')
    return undefined
  return deny(target, 'upgrade-refused', { detail: `Upgrade: ${req.upgrade}` })
}

/** Why a payload the proxy could not read is refused, when no `tcp:` rule allows it. */
const UNREADABLE: Readonly<
  Record<Exclude<TunnelPayload, 'tls'>, { readonly reason: DenyReason; readonly detail: string }>
> = {
  'h2-prior-knowledge': {
    reason: 'h2c-prior-knowledge-unsupported',
    detail: 'the client sent the HTTP/2 preface without TLS',
  },
  other: {
    reason: 'unreadable-payload',
    detail: 'the client sent neither TLS nor HTTP the proxy could read',
  },
  'server-first': {
    reason: 'unreadable-payload',
    detail: 'the client sent nothing: the server would speak first',
  },
}

/** The refusal of a payload the proxy could not read, without a `tcp:` rule to look at. */
function payloadRefusal(
  payload: TunnelPayload | undefined,
  subject: Subject,
): Decision | undefined {
  if (payload === undefined || payload === 'tls') return undefined
  const { reason, detail } = UNREADABLE[payload]
  return deny(subject, reason, { detail })
}

/**
 * Bytes the proxy does not read (neither TLS nor HTTP it could parse, or a
 * server that speaks first) travel only where a `tcp:` allow rule covers the
 * host and port, and never to a host with endpoint rules. Everywhere else a
 * connection carries TLS with its SNI checked or HTTP that the proxy read,
 * checked and wrote again itself.
 */
function rawRefusal(policy: Policy, req: EgressRequest, target: Target): Decision | undefined {
  const refusal = payloadRefusal(req.payload, target)
  if (!refusal || req.payload === 'h2-prior-knowledge') return refusal
  // Endpoint rules can only hold over traffic the proxy can read as HTTP.
  const { host } = target
  const endpoints =
    host.kind === 'name' && policy.endpoints.size > 0
      ? policy.endpoints.lookup(host.name)
      : undefined
  if (endpoints) {
    return deny(target, 'unreadable-payload', {
      from: endpoints.from,
      detail: 'the host has endpoint rules, which need readable HTTP',
    })
  }
  const raw = policy.raw.size > 0 ? policy.raw.match(host, target.port) : undefined
  return raw ? undefined : refusal
}
