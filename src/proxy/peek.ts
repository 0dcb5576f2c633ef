// Reads the first bytes a client sends into a tunnel, without forwarding any of
// them, until they say what the connection is: a TLS ClientHello (its SNI and
// whether it uses ECH), the head of a plain HTTP request (its Host), or some
// other protocol. Bounded in bytes (by the sniffers) and in time (here).

import type net from 'node:net'
import type { TlsObservation, TunnelPayload } from '../policy/index.js'
import { parseClientHello } from './sniff/client-hello.js'
import { classifyFirstBytes, parseHttpHead } from './sniff/http-head.js'

export interface PeekResult {
  readonly payload: TunnelPayload
  /** Everything read from the client so far; it goes upstream first if the tunnel is allowed. */
  readonly buffered: Buffer
  readonly tls?: TlsObservation
  readonly http?: { readonly method: string; readonly target: string; readonly host: string | null }
  /** Set when the client sent an HTTP head we could not parse. */
  readonly httpError?: string
}

export type PeekOutcome =
  | { readonly kind: 'client'; readonly result: PeekResult }
  /** The client sent nothing in time, closed, or errored. */
  | { readonly kind: 'silent' | 'closed'; readonly buffered: Buffer }
  /** `serverFirst` won the race: the upstream spoke before the client. */
  | { readonly kind: 'server-first'; readonly buffered: Buffer }

/** Classifies what has arrived so far; undefined while more bytes are needed. */
export function inspect(buffered: Buffer): PeekResult | undefined {
  const kind = classifyFirstBytes(buffered)
  if (kind === 'incomplete') return undefined
  if (kind === 'tls') {
    const hello = parseClientHello(buffered)
    if (hello.status === 'incomplete') return undefined
    const tls: TlsObservation =
      hello.status === 'ok'
        ? { kind: 'client-hello', sni: hello.sni, ech: hello.ech }
        : { kind: 'invalid', error: hello.error }
    return { payload: 'tls', buffered, tls }
  }
  if (kind === 'http') {
    const head = parseHttpHead(buffered)
    if (head.status === 'incomplete') return undefined
    if (head.status === 'invalid') return { payload: 'http', buffered, httpError: head.error }
    return {
      payload: 'http',
      buffered,
      http: { method: head.method, target: head.target, host: head.host },
    }
  }
  return { payload: 'other', buffered }
}

/**
 * Waits for the client's first bytes (starting from `initial`, already read),
 * until they can be classified, the time runs out, or `serverFirst` resolves
 * (the upstream spoke first). Leaves the socket paused and its data listener removed.
 */
export function peekClient(
  socket: net.Socket,
  initial: Buffer,
  timeoutMs: number,
  serverFirst?: Promise<unknown>,
): Promise<PeekOutcome> {
  const ready = initial.length > 0 ? inspect(initial) : undefined
  if (ready) return Promise.resolve({ kind: 'client', result: ready })
  return new Promise((resolve) => {
    let buffered = initial
    let settled = false
    const finish = (outcome: PeekOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onClosed)
      socket.off('close', onClosed)
      socket.off('error', onClosed)
      socket.pause()
      resolve(outcome)
    }
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      const result = inspect(buffered)
      if (result) finish({ kind: 'client', result })
    }
    const onClosed = (): void => finish({ kind: 'closed', buffered })
    const timer = setTimeout(() => finish({ kind: 'silent', buffered }), timeoutMs)
    socket.on('data', onData)
    socket.once('end', onClosed)
    socket.once('close', onClosed)
    socket.once('error', onClosed)
    serverFirst?.then(
      () => finish({ kind: 'server-first', buffered }),
      () => undefined,
    )
    socket.resume()
  })
}
