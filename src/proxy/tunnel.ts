// The tunnel pipeline shared by CONNECT, SOCKS5 and transparent TLS:
//
//   target named? -> decide(name) -> resolve -> decide(addresses) -> tell the client "go ahead"
//   -> peek the first bytes (ClientHello / HTTP head / other, or the server speaks first)
//   -> decide(everything seen) -> dial a checked address -> send what was peeked -> splice
//
// No client byte reaches an upstream before the last decision allowed it.

import type net from 'node:net'
import {
  canonicalHost,
  decide,
  type Decision,
  type EgressRequest,
  type Policy,
} from '../policy/index.js'
import { clientAddress, record, type ProxyContext } from './context.js'
import { peekClient, type PeekResult } from './peek.js'
import { refusalResponse, TLS_ACCESS_DENIED_ALERT } from './refusal.js'
import { connectToAny, connectViaParent, UpstreamError } from './upstream.js'

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

async function dial(
  ctx: ProxyContext,
  host: string,
  port: number,
  addresses: string[] | undefined,
): Promise<Upstream> {
  if (ctx.parentProxy) {
    // The parent gets the name, so that its own name-based rules still apply.
    const canonical = canonicalHost(host)
    const target = canonical.kind === 'name' ? canonical.name : canonical.text
    const socket = await connectViaParent(ctx.parentProxy, target, port, ctx.timeouts.connectMs)
    return { socket, address: `via ${ctx.parentProxy.host}` }
  }
  return connectToAny(addresses ?? [], port, ctx.timeouts.connectMs)
}

/**
 * Watches for the upstream's first bytes, which stay queued for the splice.
 * `stop` removes the watcher once the client has spoken first.
 */
function watchServerFirst(upstream: Promise<Upstream>): { spoke: Promise<void>; stop: () => void } {
  let stopped = false
  let detach = (): void => undefined
  const spoke = upstream.then(
    ({ socket }) =>
      new Promise<void>((resolve, reject) => {
        if (stopped) return
        const onData = (chunk: Buffer): void => {
          detach()
          socket.pause()
          socket.unshift(chunk)
          resolve()
        }
        const onError = (err: Error): void => {
          detach()
          reject(err)
        }
        detach = () => {
          socket.off('data', onData)
          socket.off('error', onError)
        }
        socket.on('data', onData)
        socket.once('error', onError)
      }),
  )
  return {
    spoke,
    stop: () => {
      stopped = true
      detach()
    },
  }
}

/** What the peeked bytes add to the request. Unparsable HTTP counts as "other": its Host cannot be checked. */
function factsOf(peek: PeekResult): Partial<EgressRequest> {
  if (peek.tls) return { payload: 'tls', tls: peek.tls }
  if (peek.http) {
    const target = peek.http.target
    const path = target.startsWith('/') ? target : undefined
    return {
      payload: 'http',
      hostHeader: peek.http.host ?? '',
      method: peek.http.method,
      ...(path ? { path } : {}),
    }
  }
  return { payload: 'other' }
}

function splice(
  client: net.Socket,
  upstream: net.Socket,
  idleMs: number,
  onClose: (error?: string) => void,
): void {
  let closed = 0
  let error: string | undefined
  const done = (): void => {
    if (++closed === 2) onClose(error)
  }
  const fail = (which: string) => (err: NodeJS.ErrnoException) => {
    error ??= `${which}: ${err.code ?? err.message}`
    client.destroy()
    upstream.destroy()
  }
  client.on('error', fail('client'))
  upstream.on('error', fail('upstream'))
  client.once('close', done)
  upstream.once('close', done)
  // When one side is fully gone, let the other flush what it has and finish. The survivor is
  // unpiped by then; keep reading (and dropping) what it still sends, or it never reads its
  // peer's FIN: a client's TLS close_notify after the server closed held the tunnel, and its
  // log line, until the idle timeout.
  client.once('close', () => {
    upstream.end()
    upstream.resume()
  })
  upstream.once('close', () => {
    client.end()
    client.resume()
  })
  for (const socket of [client, upstream]) {
    socket.setTimeout(idleMs, () => {
      error ??= 'idle timeout'
      client.destroy()
      upstream.destroy()
    })
  }
  client.pipe(upstream)
  upstream.pipe(client)
  client.resume()
  upstream.resume()
}

/** Sends a last message (if any), then closes once it is flushed. */
export function endAndClose(socket: net.Socket, last?: string | Buffer): void {
  socket.on('error', () => socket.destroy())
  if (last === undefined) socket.end(() => socket.destroy())
  else socket.end(last, () => socket.destroy())
  // A client that stops reading must not hold the socket open.
  setTimeout(() => socket.destroy(), 5000).unref()
}

export async function runTunnel(ctx: ProxyContext, t: TunnelRequest): Promise<void> {
  const startedAt = performance.now()
  const policy: Policy = ctx.policy.current
  const client = clientAddress(t.client)
  const base: EgressRequest = { protocol: t.protocol, host: t.host, port: t.port }
  const log = (
    decision: Decision,
    extra: {
      sni?: string | null
      method?: string
      path?: string
      address?: string
      error?: string
      bytesUp?: number
      bytesDown?: number
    } = {},
  ): void => record(ctx, { policy, protocol: t.protocol, decision, client, startedAt, ...extra })

  // 1. A named target is decided, resolved and decided again before the client hears "go ahead".
  let addresses: string[] | undefined
  let eager = false
  if (t.accept) {
    const byName = decide(base, policy)
    if (byName.action === 'deny') {
      log(byName)
      t.refuse?.({ kind: 'policy', decision: byName, profile: policy.name })
      return
    }
    try {
      addresses = await resolveTarget(ctx, t.host)
    } catch (err) {
      const error = err instanceof UpstreamError ? err : new UpstreamError(String(err), 'resolve')
      log(byName, { error: error.message })
      t.refuse?.({ kind: 'upstream', error })
      return
    }
    const byAddress = decide({ ...base, ...(addresses ? { resolved: addresses } : {}) }, policy)
    if (byAddress.action === 'deny') {
      log(byAddress)
      t.refuse?.({ kind: 'policy', decision: byAddress, profile: policy.name })
      return
    }
    // A rule that names this port explicitly lets the server speak first (SSH, SMTP, databases).
    eager =
      decide(
        { ...base, ...(addresses ? { resolved: addresses } : {}), payload: 'server-first' },
        policy,
      ).action === 'allow'
    t.accept()
  }

  // 2. Peek. When the server may speak first, dial now and race its first bytes against the client's.
  const early = eager ? dial(ctx, t.host, t.port, addresses) : undefined
  early?.catch(() => undefined) // handled below
  const serverFirst = early ? watchServerFirst(early) : undefined
  serverFirst?.spoke.catch(() => undefined) // an upstream error surfaces in the splice
  // An early upstream that fails (the dial, or the socket before it spoke) ends the wait too;
  // otherwise a client waiting for a banner hung until the idle timeout with nothing logged.
  // The failure is logged and the client closed below, where the upstream is awaited.
  const outcome = await peekClient(
    t.client,
    t.initial,
    eager ? ctx.timeouts.idleMs : ctx.timeouts.firstBytesMs,
    serverFirst?.spoke.catch(() => undefined),
  )
  serverFirst?.stop()
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
  // Plain HTTP in a named tunnel: every request on it is decided on its own, not just the first.
  if (peeked?.http && t.accept && t.protocol !== 'tls') {
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
    : { payload: outcome.kind === 'server-first' ? 'server-first' : 'other' }
  const sni = facts.tls?.kind === 'client-hello' ? facts.tls.sni : undefined
  // Transparent TLS learns its target from the SNI.
  const host = t.accept ? t.host : (sni ?? '')
  const seen = { sni, method: facts.method, path: facts.path }
  let request: EgressRequest = {
    ...base,
    host,
    ...facts,
    ...(addresses ? { resolved: addresses } : {}),
  }
  if (outcome.kind === 'silent') {
    request = { ...request, payload: 'server-first' }
  }

  let decision = decide(request, policy)
  if (decision.action === 'allow' && !t.accept) {
    try {
      addresses = await resolveTarget(ctx, host)
    } catch (err) {
      log(decision, { ...seen, error: (err as Error).message })
      t.client.destroy()
      return
    }
    decision = decide({ ...request, ...(addresses ? { resolved: addresses } : {}) }, policy)
  }
  if (decision.action === 'deny') {
    closeEarly()
    log(decision, seen)
    // Tell the client in its own protocol why the tunnel closes.
    if (request.payload === 'tls') endAndClose(t.client, TLS_ACCESS_DENIED_ALERT)
    else if (request.payload === 'http')
      endAndClose(t.client, refusalResponse(decision, policy.name))
    else endAndClose(t.client)
    return
  }

  // 3. Dial (unless already dialled), send what was peeked, splice.
  let upstream: Upstream
  try {
    upstream = await (early ?? dial(ctx, host, t.port, addresses))
    if (upstream.socket.destroyed) {
      throw new UpstreamError(
        `${upstream.address}:${t.port} closed before the tunnel opened`,
        'connect',
      )
    }
  } catch (err) {
    log(decision, { ...seen, error: (err as Error).message })
    t.client.destroy()
    return
  }
  if (t.client.destroyed) {
    upstream.socket.destroy()
    log(decision, {
      ...seen,
      address: upstream.address,
      error: 'client closed before the upstream answered',
    })
    return
  }
  const buffered = outcome.kind === 'client' ? outcome.result.buffered : outcome.buffered
  const before = upstream.socket.bytesWritten
  if (buffered.length > 0) upstream.socket.write(buffered)
  splice(t.client, upstream.socket, ctx.timeouts.idleMs, (error) => {
    log(decision, {
      ...seen,
      address: upstream.address,
      ...(error ? { error } : {}),
      bytesUp: upstream.socket.bytesWritten - before,
      bytesDown: upstream.socket.bytesRead,
    })
  })
}
