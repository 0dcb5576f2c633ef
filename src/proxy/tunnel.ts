// The tunnel pipeline shared by CONNECT, SOCKS5 and transparent TLS:
//
//   target named? -> decide(name), unless it resolves without a lookup -> resolve
//   -> decide(addresses, may raw TCP travel? (a tcp: rule)) [-> decide(addresses) if not]
//   -> tell the client "go ahead"
//   -> peek the first bytes (a ClientHello, something else, or the server speaks first)
//   -> not TLS, no tcp: rule: the proxy's HTTP server takes the connection over, and
//      every request on it is read, decided and written again by the forwarder
//   -> otherwise decide(everything seen) -> dial a checked address -> send what was
//      peeked -> splice
//
// No client byte reaches an upstream before the last decision allowed it, and
// bytes the proxy did not read reach one only on a tcp: rule.

import type net from 'node:net'
import { decide, type Decision, type EgressRequest, type Policy } from '../policy/index.js'
import { clientAddress, record, type ProxyContext } from './context.js'
import { peekClient, type PeekResult } from './peek.js'
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

export interface TunnelRequest {
  readonly protocol: 'connect' | 'socks' | 'tls'
  readonly client: net.Socket
  /** The target as the client named it; empty for transparent TLS, where the SNI names it. */
  readonly host: string
  readonly port: number
  /** Client bytes already read past the handshake. */
  readonly initial: Buffer
  /** Tells the client the tunnel is open (CONNECT 200, SOCKS success); absent for transparent TLS. */
  readonly accept?: () => void
  /** Refuses before `accept` (CONNECT 403, SOCKS 0x02 or a failure code) and closes. */
  readonly refuse?: (refusal: TunnelRefusal) => void
}

/** Dials a checked target and hands the upstream to the relay. */
async function dial(
  ctx: ProxyContext,
  host: string,
  port: number,
  addresses: string[] | undefined,
  relay: Relay,
): Promise<Upstream> {
  const upstream = await dialUpstream(ctx, host, port, addresses, relay.onread)
  // Through a parent proxy the socket is read as a stream (it was, to read the parent's answer).
  relay.attach(upstream.socket, !ctx.parentProxy)
  return upstream
}

/** What the peeked bytes add to the request. */
function factsOf(peek: PeekResult): Partial<EgressRequest> {
  return peek.tls ? { payload: 'tls', tls: peek.tls } : { payload: 'other' }
}

/** What a tunnel's log line says about what was seen. */
interface Seen {
  readonly sni?: string | null
}

export async function runTunnel(ctx: ProxyContext, t: TunnelRequest): Promise<void> {
  const startedAt = performance.now()
  const policy: Policy = ctx.policy.current
  const client = clientAddress(t.client)
  const base: EgressRequest = { protocol: t.protocol, host: t.host, port: t.port }
  const log = (
    decision: Decision,
    seen?: Seen,
    end?: { address?: string; error?: string; bytesUp?: number; bytesDown?: number },
  ): void =>
    record(ctx, {
      policy,
      protocol: t.protocol,
      decision,
      client,
      startedAt,
      sni: seen?.sni,
      address: end?.address,
      error: end?.error,
      bytesUp: end?.bytesUp,
      bytesDown: end?.bytesDown,
    })
  const refuse = (decision: Decision): void => {
    log(decision)
    t.refuse?.({ kind: 'policy', decision, profile: policy.name })
  }

  // 1. A named target is decided and resolved before the client hears "go ahead".
  let addresses: string[] | undefined
  /** A tcp: rule covers the target: unread bytes may travel, and the server may speak first. */
  let raw = false
  if (t.accept) {
    addresses = addressesWithoutLookup(ctx, t.host)
    if (!addresses) {
      // A lookup tells a DNS server the name: only for a name the policy allows.
      const byName = decide(base, policy)
      if (byName.action === 'deny') return refuse(byName)
      try {
        addresses = await resolveUpstream(ctx, t.host)
      } catch (err) {
        const error = err as UpstreamError
        log(byName, undefined, { error: error.message })
        t.refuse?.({ kind: 'upstream', error })
        return
      }
    }
    const resolved: EgressRequest = addresses ? { ...base, resolved: addresses } : base
    // One question answers two when the answer is yes: the addresses may be dialled, and the
    // server may speak first (a tcp: rule covers this port: SSH, SMTP, databases), so dial at
    // once. Whatever else may be refused is refused as well without payload 'server-first'.
    raw = decide({ ...resolved, payload: 'server-first' }, policy).action === 'allow'
    if (!raw) {
      const byAddress = decide(resolved, policy)
      if (byAddress.action === 'deny') return refuse(byAddress)
    }
    t.accept()
  }

  // 2. Peek. When the server may speak first, dial now and race its first bytes against the client's.
  const relay = new Relay()
  const early = raw ? dial(ctx, t.host, t.port, addresses, relay) : undefined
  early?.catch(() => undefined) // handled below
  // An early upstream that fails (the dial, or the socket before it spoke) ends the wait too;
  // otherwise a client waiting for a banner hung until the idle timeout with nothing logged.
  // The failure is logged and the client closed below, where the upstream is awaited.
  const spoke = early?.then(
    () => relay.spoke(),
    () => undefined,
  )
  const outcome = await peekClient(
    t.client,
    t.initial,
    raw ? ctx.timeouts.idleMs : ctx.timeouts.firstBytesMs,
    spoke,
    ctx.timeouts.handshakeMs,
  )
  relay.stopWatching()
  const closeEarly = (): void => {
    void early?.then(
      ({ socket }) => socket.destroy(),
      () => undefined,
    )
  }

  if (outcome.kind === 'closed' && outcome.buffered.length === 0) {
    closeEarly()
    t.client.destroy()
    return // nothing was sent, nothing to decide
  }
  const peeked = outcome.kind === 'client' ? outcome.result : undefined
  // Not TLS in a named tunnel without a tcp: rule: HTTP, or nothing that may pass. The proxy's
  // HTTP server reads it (as leniently as Node's parser, which refuses what it cannot read),
  // and every request on it is decided on its own and written again by the forwarder.
  if (peeked?.payload === 'other' && t.accept && t.protocol !== 'tls' && !raw) {
    closeEarly()
    ctx.serveHttpInTunnel(t.client, peeked.buffered, {
      protocol: t.protocol,
      host: t.host,
      port: t.port,
    })
    return
  }
  const facts: Partial<EgressRequest> = peeked
    ? factsOf(peeked)
    : // Silence and a server that spoke first are the same to decide(); bytes and a hang-up are not.
      { payload: outcome.kind === 'closed' ? 'other' : 'server-first' }
  const sni = facts.tls?.kind === 'client-hello' ? facts.tls.sni : undefined
  // Transparent TLS learns its target from the SNI.
  const host = t.accept ? t.host : (sni ?? '')
  const seen: Seen = { sni }
  const request: EgressRequest = { ...base, ...facts, host }

  let decision: Decision
  if (t.accept) {
    decision = decide(addresses ? { ...request, resolved: addresses } : request, policy)
  } else {
    addresses = addressesWithoutLookup(ctx, host)
    if (addresses) {
      decision = decide({ ...request, resolved: addresses }, policy)
    } else {
      decision = decide(request, policy)
      if (decision.action === 'allow') {
        try {
          addresses = await resolveUpstream(ctx, host)
        } catch (err) {
          log(decision, seen, { error: (err as Error).message })
          t.client.destroy()
          return
        }
        decision = decide(addresses ? { ...request, resolved: addresses } : request, policy)
      }
    }
  }
  if (decision.action === 'deny') {
    closeEarly()
    log(decision, seen)
    // Tell the client in its own protocol why the tunnel closes.
    if (request.payload === 'tls') closeGracefully(t.client, TLS_ACCESS_DENIED_ALERT)
    // Plain text for a person who pointed an HTTP client at the TLS port.
    else if (request.payload === 'other')
      closeGracefully(t.client, refusalResponse(decision, policy.name))
    else closeGracefully(t.client)
    return
  }

  // 3. Dial (unless already dialled), send what was peeked, splice.
  let upstream: Upstream
  try {
    upstream = await (early ?? dial(ctx, host, t.port, addresses, relay))
    if (upstream.socket.destroyed) {
      throw new UpstreamError(
        `${upstream.address}:${t.port} closed before the tunnel opened`,
        'connect',
      )
    }
  } catch (err) {
    log(decision, seen, { error: (err as Error).message })
    t.client.destroy()
    return
  }
  if (t.client.destroyed) {
    upstream.socket.destroy()
    log(decision, seen, {
      address: upstream.address,
      error: 'client closed before the upstream answered',
    })
    return
  }
  const buffered = outcome.kind === 'client' ? outcome.result.buffered : outcome.buffered
  const before = upstream.socket.bytesWritten
  if (buffered.length > 0) upstream.socket.write(buffered)
  splice(ctx, relay, t.client, upstream.socket, (error) => {
    log(decision, seen, {
      address: upstream.address,
      error,
      bytesUp: upstream.socket.bytesWritten - before,
      bytesDown: upstream.socket.bytesRead - upstream.overhead,
    })
  })
}
