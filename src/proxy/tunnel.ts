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
import {
  canonicalHost,
  decide,
  hostText,
  tryCanonicalHost,
  type Decision,
  type EgressRequest,
  type Policy,
} from '../policy/index.js'
import { clientAddress, record, type ProxyContext } from './context.js'
import { peekClient, type PeekResult } from './peek.js'
import { refusalResponse, TLS_ACCESS_DENIED_ALERT } from './refusal.js'
import type { Sweepable } from './sweeper.js'
import { connectToAny, connectViaParent, UpstreamError, type OnRead } from './upstream.js'
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

interface Upstream {
  readonly socket: net.Socket
  readonly address: string
  /** Bytes read that were not the target's (a parent proxy's answer to CONNECT). */
  readonly overhead: number
}

/** Addresses to dial for a host; with a parent proxy, names this proxy cannot resolve go to the parent. */
async function resolveTarget(ctx: ProxyContext, host: string): Promise<string[] | undefined> {
  const canonical = canonicalHost(host)
  try {
    return await ctx.resolver.resolve(canonical)
  } catch (err) {
    if (ctx.parentProxy && err instanceof UpstreamError && err.kind === 'resolve') return undefined
    throw err
  }
}

/** Addresses for a host that resolves without a lookup (an IP literal, --resolve); else undefined. */
function resolveLocally(ctx: ProxyContext, host: string): string[] | undefined {
  const canonical = tryCanonicalHost(host)
  return canonical ? ctx.resolver.resolveLocal(canonical) : undefined
}

async function dial(
  ctx: ProxyContext,
  host: string,
  port: number,
  addresses: string[] | undefined,
  relay: Relay,
): Promise<Upstream> {
  if (ctx.parentProxy) {
    // The parent gets the address this proxy checked, so it cannot resolve the name to
    // another one; only a name this proxy could not resolve itself goes as a name.
    const canonical = canonicalHost(host)
    const target = addresses?.[0] ?? hostText(canonical)
    const socket = await connectViaParent(ctx.parentProxy, target, port, ctx.timeouts.connectMs)
    // What the parent sent past its answer was put back: it is the target's.
    const overhead = socket.bytesRead - socket.readableLength
    relay.attach(socket, false)
    return {
      socket,
      address: `via ${ctx.parentProxy.host}${addresses?.[0] ? ` to ${addresses[0]}` : ''}`,
      overhead,
    }
  }
  const upstream = await connectToAny(addresses ?? [], port, ctx.timeouts.connectMs, relay.onread)
  relay.attach(upstream.socket, true)
  return { ...upstream, overhead: 0 }
}

/** Size of the memory an upstream reads into. */
const READ_SIZE = 64 * 1024
/**
 * Read memory of closed tunnels, for the next ones: a new 64 KiB per tunnel made
 * short tunnels spend three times as long in garbage collection. Bounded, so an
 * idle proxy holds at most POOL_MAX × READ_SIZE.
 */
const pool: Buffer[] = []
const POOL_MAX = 16

/**
 * Carries what an upstream sends to the client. A directly dialled upstream reads
 * into memory that is used again for the next read (net's `onread`) as long as
 * the client took the bytes at once; a new Buffer per read (what a stream does)
 * made a bulk transfer spend a third of its CPU in garbage collection. Before the
 * splice starts, the first bytes are held and reading stops: the server spoke first.
 */
class Relay {
  /** The memory reads go to; replaced when a write to the client still refers to it. */
  private memory: Buffer | undefined
  private held: Buffer[] = []
  private upstream: net.Socket | undefined
  private client: net.Socket | undefined
  /** Called once when, before the splice, the upstream speaks, fails or closes. */
  private notify: (() => void) | undefined

  readonly onread: OnRead = {
    buffer: () => (this.memory ??= pool.pop() ?? Buffer.allocUnsafe(READ_SIZE)),
    callback: (n, buf) => {
      this.deliver((buf as Buffer).subarray(0, n), true)
      return true
    },
  }

  /** Takes over a connected upstream; one without `onread` is read as a stream. */
  attach(socket: net.Socket, onread: boolean): void {
    this.upstream = socket
    if (!onread) socket.on('data', (chunk: Buffer) => this.deliver(chunk, false))
    // Before the splice, a failure only ends the wait; the splice sees the socket destroyed.
    const early = (): void => {
      if (!this.client) this.signal()
    }
    socket.once('error', early)
    socket.once('close', early)
    if (!onread) socket.resume()
  }

  /** Resolves when, before the splice, the upstream speaks (its bytes are held), fails or closes. */
  spoke(): Promise<void> {
    return new Promise((resolve) => {
      if (this.held.length > 0 || this.upstream?.destroyed) resolve()
      else this.notify = resolve
    })
  }

  /** Stops waiting for the upstream to speak (the client spoke first). */
  stopWatching(): void {
    this.notify = undefined
  }

  private signal(): void {
    const notify = this.notify
    this.notify = undefined
    notify?.()
  }

  /** Starts relaying to the client: what was held first, then everything read. */
  start(client: net.Socket): void {
    this.client = client
    for (const chunk of this.held) client.write(chunk)
    this.held = []
    this.upstream?.resume()
  }

  private deliver(chunk: Buffer, reused: boolean): void {
    const client = this.client
    if (!client) {
      this.held.push(reused ? Buffer.from(chunk) : chunk)
      this.upstream?.pause()
      this.signal()
      return
    }
    // A client that is gone can take nothing more; read on (and drop) to see the upstream's FIN.
    if (client.destroyed || client.writableEnded) return
    const flushed = client.write(chunk)
    if (reused && client.writableLength > 0) this.memory = undefined
    if (!flushed) {
      this.upstream?.pause()
      client.once('drain', this.resume)
    }
  }

  private readonly resume = (): void => {
    this.upstream?.resume()
  }

  /**
   * Gives the read memory back once both sockets are closed: no read can come any
   * more, and no write to the client refers to it (a write that did got new memory).
   */
  release(): void {
    if (this.memory && pool.length < POOL_MAX) pool.push(this.memory)
    this.memory = undefined
  }
}

/** What the peeked bytes add to the request. */
function factsOf(peek: PeekResult): Partial<EgressRequest> {
  return peek.tls ? { payload: 'tls', tls: peek.tls } : { payload: 'other' }
}

/** Ends a socket's writing side unless it has ended or is gone (end() again only makes an error). */
function endOnce(socket: net.Socket): void {
  if (!socket.destroyed && !socket.writableEnded) socket.end()
}

/**
 * Joins client and upstream until both are closed. Client to upstream is a pipe;
 * upstream to client goes through the relay. Idle tunnels are found by the
 * context's sweeper, which compares the bytes read with its last sweep.
 */
function splice(
  ctx: ProxyContext,
  relay: Relay,
  client: net.Socket,
  upstream: net.Socket,
  onClose: (error?: string) => void,
): void {
  let closed = 0
  let error: string | undefined
  const idleMs = ctx.timeouts.idleMs
  let seen = -1
  let lastActive = 0
  const idle: Sweepable = {
    sweep: (now) => {
      const read = client.bytesRead + upstream.bytesRead
      if (read !== seen) {
        seen = read
        lastActive = now
      } else if (now - lastActive >= idleMs) {
        error ??= 'idle timeout'
        client.destroy()
        upstream.destroy()
      }
    },
  }
  ctx.sweeper.add(idle)
  const done = (): void => {
    if (++closed === 2) {
      ctx.sweeper.delete(idle)
      relay.release()
      onClose(error)
    }
  }
  const fail = (which: string) => (err: NodeJS.ErrnoException) => {
    error ??= `${which}: ${err.code ?? err.message}`
    client.destroy()
    upstream.destroy()
  }
  client.on('error', fail('client'))
  upstream.on('error', fail('upstream'))
  // When one side is fully gone, let the other flush what it has and finish. The survivor is
  // unpiped by then; keep reading (and dropping) what it still sends, or it never reads its
  // peer's FIN: a client's TLS close_notify after the server closed held the tunnel, and its
  // log line, until the idle timeout.
  client.once('close', () => {
    endOnce(upstream)
    if (!upstream.destroyed) upstream.resume()
    done()
  })
  upstream.once('close', () => {
    endOnce(client)
    if (!client.destroyed) client.resume()
    done()
  })
  upstream.once('end', () => endOnce(client))
  client.pipe(upstream)
  relay.start(client)
  client.resume()
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
    addresses = resolveLocally(ctx, t.host)
    if (!addresses) {
      // A lookup tells a DNS server the name: only for a name the policy allows.
      const byName = decide(base, policy)
      if (byName.action === 'deny') return refuse(byName)
      try {
        addresses = await resolveTarget(ctx, t.host)
      } catch (err) {
        const error = err instanceof UpstreamError ? err : new UpstreamError(String(err), 'resolve')
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
    addresses = resolveLocally(ctx, host)
    if (addresses) {
      decision = decide({ ...request, resolved: addresses }, policy)
    } else {
      decision = decide(request, policy)
      if (decision.action === 'allow') {
        try {
          addresses = await resolveTarget(ctx, host)
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
