// One tunnel, from its target to its log line: CONNECT, SOCKS5 and transparent
// TLS all run through these stages, in this order.
//
//   target   what the client named (CONNECT authority, SOCKS address); nothing
//            for transparent TLS, where the ClientHello will name it
//   decide   a named target by name, before any lookup; then resolve it and
//            decide its addresses, before the client hears "go ahead", so that
//            a refusal comes in the client's own protocol (403, SOCKS 0x02)
//   hold     a decision marked `ask` waits for an approval, before anything is
//            looked up or dialled (hold.ts; after any decision below as well)
//   budget   an allowed target whose budget is used up is refused (429, 0x02)
//   peek     the first bytes: a ClientHello (its SNI), something else, or the
//            server speaking first (only where a tcp: rule lets raw TCP travel)
//   relay?   not TLS in a named tunnel without a tcp: rule: the proxy's own HTTP
//            server takes the connection, and every request on it is served
//            on its own (read, decided, written again; see http-forward.ts)
//   decide   again, with everything seen (transparent TLS: the SNI names the
//            target, decided by name, then resolved and decided again)
//   dial     exactly the checked addresses (or through the parent proxy)
//   relay    splice, counting bytes (and charging them to a budget: accounting.ts)
//   log      the exchange's one line, when both sides have closed or when refused
//
// No client byte reaches an upstream before the last decision allowed it, and
// bytes the proxy did not read reach one only on a tcp: rule.

import type net from 'node:net'
import { interceptionFor, type Decision, type EgressRequest } from '../policy/index.js'
import { admitWithinBudget, meterFor, releaseAdmission } from './accounting.js'
import type { BudgetUsage } from './budgets.js'
import type { ProxyContext } from './context.js'
import type { Exchange } from './exchange.js'
import { holdClient } from './hold.js'
import { peekClient, type PeekOutcome } from './peek.js'
import { refusalResponse, TLS_ACCESS_DENIED_ALERT } from './refusal.js'
import { Relay, splice } from './relay.js'
import {
  addressesWithoutLookup,
  dialUpstream,
  resolveUpstream,
  UpstreamError,
  type Upstream,
} from './upstream.js'
import { closeGracefully } from './wire.js'

export type TunnelRefusal =
  | { readonly kind: 'policy'; readonly decision: Decision; readonly profile: string }
  | { readonly kind: 'upstream'; readonly error: UpstreamError }
  /** The target's budget is used up (`decision` is the budget-exceeded refusal). */
  | {
      readonly kind: 'budget'
      readonly decision: Decision
      readonly budget: BudgetUsage
      readonly profile: string
    }

/** Whom a tunnel is for, as its listener learnt it. */
export type TunnelTarget =
  /** CONNECT or SOCKS: the client named host and port, and is told before it sends anything. */
  | {
      readonly kind: 'named'
      readonly host: string
      readonly port: number
      /** Tells the client the tunnel is open (CONNECT 200, SOCKS success). */
      readonly accept: () => void
      /** Refuses in the client's protocol (CONNECT 403/502/504, SOCKS reply code) and closes. */
      readonly refuse: (refusal: TunnelRefusal) => void
    }
  /** Transparent TLS: only the port is known; the ClientHello's SNI names the host. */
  | { readonly kind: 'transparent'; readonly port: number }

export interface TunnelIngress {
  readonly client: net.Socket
  readonly target: TunnelTarget
  /** Client bytes already read past the handshake. */
  readonly initial: Buffer
  /** The exchange the listener opened when it accepted the connection. */
  readonly exchange: Exchange
}

/** What a tunnel knows as it passes the stages. */
interface Tunnel {
  readonly ctx: ProxyContext
  readonly client: net.Socket
  readonly target: TunnelTarget
  readonly exchange: Exchange
  /** The target host: as named, or (transparent TLS) from the SNI once peeked. */
  host: string
  readonly port: number
  /** Checked addresses; undefined before resolving, or when the parent proxy resolves the name. */
  addresses: string[] | undefined
  /** A tcp: rule covers the target: unread bytes may travel, and the server may speak first. */
  raw: boolean
  readonly relay: Relay
  /** An upstream dialled before the peek, where the server may speak first. */
  early: Promise<Upstream> | undefined
}

/**
 * A decision stage's answer: at once when it needed no lookup (the usual case: a
 * cached or static address), later when it did. Awaited only then, so that a
 * tunnel costs no promise for what needs no I/O.
 */
type Soon<T> = T | Promise<T>

/** What the peek saw, for the second decision. */
interface Seen {
  /** The client's own bytes said what they are (not silence, a hang-up or the server speaking). */
  readonly fromClient: boolean
  readonly facts: Pick<EgressRequest, 'payload' | 'tls'>
  /** Every client byte read so far: it goes upstream first if the tunnel is allowed. */
  readonly buffered: Buffer
  readonly sni: string | undefined
}

export async function runTunnel(ctx: ProxyContext, ingress: TunnelIngress): Promise<void> {
  const { target } = ingress
  const t: Tunnel = {
    ctx,
    client: ingress.client,
    target,
    exchange: ingress.exchange,
    host: target.kind === 'named' ? target.host : '',
    port: target.port,
    addresses: undefined,
    raw: false,
    relay: new Relay(),
    early: undefined,
  }
  if (target.kind === 'named') {
    t.exchange.target = { host: target.host, port: target.port }
    const admitted = decideNamedTarget(t, target)
    if (!(admitted instanceof Promise ? await admitted : admitted)) return
    target.accept()
  }
  const outcome = await peekFirstBytes(t, ingress.initial)
  t.relay.stopWatching()
  const seen = seenIn(outcome)
  if (!seen) {
    closeEarlyUpstream(t)
    releaseAdmission(t.ctx, t.exchange)
    t.client.destroy()
    return // the client hung up without a byte: nothing was asked, nothing to log
  }
  if (seen.fromClient && seen.facts.payload === 'other' && target.kind === 'named' && !t.raw) {
    closeEarlyUpstream(t)
    // Each request inside is admitted and charged on its own: the tunnel itself costs none.
    releaseAdmission(t.ctx, t.exchange)
    return serveAsHttp(t, seen)
  }
  const deciding = decideWhatWasSeen(t, seen)
  const seenDecision = deciding instanceof Promise ? await deciding : deciding
  if (!seenDecision) return
  const decision = seenDecision.ask ? await held(t, seenDecision) : seenDecision
  if (decision.action === 'deny') return refuseWhatWasSeen(t, seen, decision)
  if (admitWithinBudget(t.ctx, t.exchange))
    return refuseWhatWasSeen(t, seen, t.exchange.decision as Decision)
  // A ClientHello for a host the proxy must read is answered with a leaf of the sandbox CA
  // and served request by request, as plain HTTP is (intercept/): each request is then
  // decided, held if it must be, and counted against its budget on its own.
  if (seen.facts.payload === 'tls' && mustIntercept(t, decision))
    return interceptWhatWasSeen(t, seen)
  const upstream = await dialAllowedTarget(t)
  if (upstream) relayUntilClosed(t, upstream, seen.buffered)
}

/** The hold stage: waits for the answer to an `ask` decision, watching the client meanwhile. */
function held(t: Tunnel, decision: Decision): Promise<Decision> {
  return holdClient(t.client, (signal) => t.exchange.hold(decision, signal))
}

/** The next stage, with the decision as it stands after its hold (at once when it did not ask). */
function afterHold<T>(t: Tunnel, decision: Decision, next: (d: Decision) => Soon<T>): Soon<T> {
  return decision.ask ? held(t, decision).then(next) : next(decision)
}

/**
 * Decides a named target: by name first (a lookup tells a DNS server the name, so
 * only allowed names are looked up), then by the addresses it resolves to.
 * Refuses in the client's protocol; false then.
 */
function decideNamedTarget(
  t: Tunnel,
  target: Extract<TunnelTarget, { kind: 'named' }>,
): Soon<boolean> {
  const { exchange } = t
  t.addresses = addressesWithoutLookup(t.ctx, t.host)
  if (t.addresses) return decideNamedAddresses(t, target)
  const byName = exchange.decide({ protocol: exchange.protocol, host: t.host, port: t.port })
  return afterHold(t, byName, (answered) => resolveAllowed(t, target, answered))
}

/** Resolves a named target allowed by name (or refuses it), then decides its addresses. */
function resolveAllowed(
  t: Tunnel,
  target: Extract<TunnelTarget, { kind: 'named' }>,
  byName: Decision,
): Soon<boolean> {
  const { exchange } = t
  if (byName.action === 'deny') return refuseNamed(t, target, byName)
  return resolveUpstream(t.ctx, t.host).then(
    (found) => {
      t.addresses = found
      return decideNamedAddresses(t, target)
    },
    (err: unknown) => {
      if (!(err instanceof UpstreamError)) throw err
      exchange.fail(err.message)
      exchange.end()
      target.refuse({ kind: 'upstream', error: err })
      return false
    },
  )
}

/**
 * Decides the addresses of a named target (undefined: the parent proxy resolves
 * the name), and whether a tcp: rule covers it.
 */
function decideNamedAddresses(
  t: Tunnel,
  target: Extract<TunnelTarget, { kind: 'named' }>,
): Soon<boolean> {
  const { exchange } = t
  const base: EgressRequest = { protocol: exchange.protocol, host: t.host, port: t.port }
  const resolved: EgressRequest = t.addresses ? { ...base, resolved: t.addresses } : base
  // One question answers two when the answer is yes: the addresses may be dialled, and the
  // server may speak first (a tcp: rule covers this port: SSH, SMTP, databases), so dial at
  // once. Whatever else may be refused is refused as well without payload 'server-first'.
  // Without tcp: rules the answer is no, and the question is not asked.
  t.raw =
    exchange.policy.raw.size > 0 &&
    exchange.decide({ ...resolved, payload: 'server-first' }).action === 'allow'
  if (t.raw) return withinBudget(t, target)
  return afterHold(t, exchange.decide(resolved), (answered) => admitNamed(t, target, answered))
}

function admitNamed(
  t: Tunnel,
  target: Extract<TunnelTarget, { kind: 'named' }>,
  decision: Decision,
): boolean {
  return decision.action === 'allow' ? withinBudget(t, target) : refuseNamed(t, target, decision)
}

/** The accounting stage's admission, before the client hears "go ahead". */
function withinBudget(t: Tunnel, target: Extract<TunnelTarget, { kind: 'named' }>): boolean {
  const { exchange } = t
  const over = admitWithinBudget(t.ctx, exchange)
  if (!over) return true
  exchange.end()
  const decision = exchange.decision as Decision
  target.refuse({ kind: 'budget', decision, budget: over.budget, profile: exchange.policy.name })
  return false
}

function refuseNamed(
  t: Tunnel,
  target: Extract<TunnelTarget, { kind: 'named' }>,
  decision: Decision,
): false {
  t.exchange.end()
  target.refuse({ kind: 'policy', decision, profile: t.exchange.policy.name })
  return false
}

/**
 * Reads the client's first bytes. Where the server may speak first, the upstream is
 * dialled now and its first bytes race the client's (they are held, not relayed).
 */
function peekFirstBytes(t: Tunnel, initial: Buffer): Promise<PeekOutcome> {
  const { ctx } = t
  let spoke: Promise<void> | undefined
  if (t.raw) {
    t.early = dialUpstreamFor(t)
    // A failed early dial ends the wait too (a client waiting for a banner would hang until
    // the idle timeout); the failure is logged once the upstream is awaited.
    spoke = t.early.then(
      () => t.relay.spoke(),
      () => undefined,
    )
  }
  return peekClient(
    t.client,
    initial,
    t.raw ? ctx.timeouts.idleMs : ctx.timeouts.firstBytesMs,
    spoke,
    ctx.timeouts.handshakeMs,
  )
}

/** What the peek saw; undefined when the client hung up without sending a byte. */
function seenIn(outcome: PeekOutcome): Seen | undefined {
  if (outcome.kind === 'client') {
    const { result } = outcome
    const facts = result.tls
      ? { payload: result.payload, tls: result.tls }
      : { payload: result.payload }
    const sni = result.tls?.kind === 'client-hello' ? (result.tls.sni ?? undefined) : undefined
    return { fromClient: true, facts, buffered: result.buffered, sni }
  }
  if (outcome.kind === 'closed' && outcome.buffered.length === 0) return undefined
  // Silence and a server that spoke first are the same to decide(); bytes and a hang-up are not.
  const payload = outcome.kind === 'closed' ? 'other' : 'server-first'
  return { fromClient: false, facts: { payload }, buffered: outcome.buffered, sni: undefined }
}

/**
 * Plain HTTP (or anything else that is not TLS) in a named tunnel without a tcp:
 * rule: the proxy's HTTP server reads it (as leniently as Node's parser, which
 * refuses what it cannot read), and every request is decided on its own.
 */
function serveAsHttp(t: Tunnel, seen: Seen): void {
  const protocol = t.exchange.protocol === 'socks' ? 'socks' : 'connect'
  const approved = t.exchange.approved
  t.ctx.serveHttpInTunnel(t.client, seen.buffered, {
    protocol,
    host: t.host,
    port: t.port,
    ...(approved ? { approved } : {}),
  })
}

/**
 * Decides again with what the peek saw. Transparent TLS learns its target here,
 * from the SNI. Undefined when an allowed name did not resolve (logged, and the
 * client closed).
 */
function decideWhatWasSeen(t: Tunnel, seen: Seen): Soon<Decision | undefined> {
  const { exchange } = t
  exchange.sni = seen.sni
  if (t.target.kind === 'transparent') {
    t.host = seen.sni ?? ''
    exchange.target = { host: t.host, port: t.port }
    t.addresses = addressesWithoutLookup(t.ctx, t.host)
  }
  const request: EgressRequest = {
    protocol: exchange.protocol,
    host: t.host,
    port: t.port,
    ...seen.facts,
  }
  if (t.target.kind === 'named' || t.addresses)
    return exchange.decide(t.addresses ? { ...request, resolved: t.addresses } : request)
  return afterHold(t, exchange.decide(request), (byName) => resolveThenDecide(t, request, byName))
}

/**
 * A name learnt from the SNI and allowed by name (after its hold, if it was held):
 * resolved and decided with its addresses.
 */
function resolveThenDecide(
  t: Tunnel,
  request: EgressRequest,
  byName: Decision,
): Soon<Decision | undefined> {
  const { exchange } = t
  if (byName.action === 'deny') return byName
  return resolveUpstream(t.ctx, t.host).then(
    (found) => {
      t.addresses = found
      return exchange.decide(found ? { ...request, resolved: found } : request)
    },
    // Nothing to tell a transparent client but a closed connection.
    (err: unknown) => giveUp(t, err),
  )
}

/** Ends an allowed tunnel whose upstream could not be reached: logged with why, the client closed. */
function giveUp(t: Tunnel, err: unknown): undefined {
  if (!(err instanceof UpstreamError)) throw err
  t.exchange.fail(err.message)
  t.exchange.end()
  t.client.destroy()
  return undefined
}

/** Whether the allowed TLS tunnel must be read: endpoint rules, a bound secret, inspect: true. */
function mustIntercept(t: Tunnel, decision: Decision): boolean {
  const { policy } = t.exchange
  const { secrets } = t.ctx.interception
  // Most policies intercept nothing: no lookup then.
  if (policy.endpoints.size === 0 && policy.inspect.size === 0 && secrets.size === 0) return false
  return interceptionFor(policy, decision, secrets).intercept
}

/**
 * Hands a tunnel that must be read to the interception stage; refused (logged as
 * interception-unavailable) when the proxy cannot intercept: no CA, or a parent
 * proxy. Never spliced unread.
 */
function interceptWhatWasSeen(t: Tunnel, seen: Seen): Promise<void> | void {
  closeEarlyUpstream(t)
  const { ctx, exchange } = t
  const why = !ctx.interception.minter
    ? 'the proxy has no interception CA'
    : ctx.parentProxy
      ? 'interception through a parent proxy (--upstream-proxy) is not supported'
      : undefined
  if (why !== undefined) {
    const decision = exchange.decision as Decision
    exchange.decision = {
      ...decision,
      action: 'deny',
      reason: 'interception-unavailable',
      detail: why,
    }
    return refuseWhatWasSeen(t, seen, exchange.decision)
  }
  // Each request inside is admitted and charged on its own: the tunnel itself costs none.
  releaseAdmission(ctx, exchange)
  const protocol =
    exchange.protocol === 'socks' ? 'socks' : exchange.protocol === 'tls' ? 'tls' : 'connect'
  // The approval that let the tunnel through covers the requests inside, as in serveAsHttp:
  // only `ask` decisions; the endpoint rules still refuse what they refuse.
  const approved = exchange.approved
  return ctx.interceptTls(
    t.client,
    seen.buffered,
    { protocol, host: t.host, port: t.port, ...(approved ? { approved } : {}) },
    exchange,
  )
}

/** Refuses after the peek, in the client's own protocol, and logs. */
function refuseWhatWasSeen(t: Tunnel, seen: Seen, decision: Decision): void {
  closeEarlyUpstream(t)
  releaseAdmission(t.ctx, t.exchange)
  t.exchange.end()
  if (seen.facts.payload === 'tls') closeGracefully(t.client, TLS_ACCESS_DENIED_ALERT)
  // Plain text for a person who pointed an HTTP client at the TLS port.
  else if (seen.facts.payload === 'other')
    closeGracefully(t.client, refusalResponse(decision, t.exchange.policy.name))
  else closeGracefully(t.client)
}

function dialUpstreamFor(t: Tunnel): Promise<Upstream> {
  return dialUpstream(t.ctx, t.host, t.port, t.addresses, t.relay.onread).then((upstream) => {
    // Through a parent proxy the socket is read as a stream (it was, to read the parent's answer).
    t.relay.attach(upstream.socket, !t.ctx.parentProxy)
    return upstream
  })
}

/** Closes an upstream dialled before the peek that will not be used. */
function closeEarlyUpstream(t: Tunnel): void {
  void t.early?.then(
    ({ socket }) => socket.destroy(),
    () => undefined,
  )
}

/** Dials the checked target (or takes the one dialled before the peek); undefined if it failed, logged. */
async function dialAllowedTarget(t: Tunnel): Promise<Upstream | undefined> {
  const { exchange } = t
  let upstream: Upstream
  try {
    upstream = await (t.early ?? dialUpstreamFor(t))
    if (upstream.socket.destroyed)
      throw new UpstreamError(
        `${upstream.address}:${t.port} closed before the tunnel opened`,
        'connect',
      )
  } catch (err) {
    return giveUp(t, err)
  }
  exchange.address = upstream.address
  if (t.client.destroyed) {
    upstream.socket.destroy()
    exchange.fail('client closed before the upstream answered')
    exchange.end()
    return undefined
  }
  return upstream
}

/** Sends what was peeked, then splices until both sides have closed; the line is written then. */
function relayUntilClosed(t: Tunnel, upstream: Upstream, buffered: Buffer): void {
  const socket = upstream.socket
  const before = socket.bytesWritten
  t.exchange.countBytesWith(() => ({
    up: socket.bytesWritten - before,
    down: socket.bytesRead - upstream.overhead,
  }))
  const meter = meterFor(t.ctx, t.exchange)
  const done = (error?: string): void => {
    if (error !== undefined) t.exchange.fail(error)
    t.exchange.end()
  }
  splice(t.ctx, t.relay, t.client, socket, done, { first: buffered, ...(meter ? { meter } : {}) })
}
