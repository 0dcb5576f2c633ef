// Reads the first bytes a client sends into a tunnel, without forwarding any of
// them, until they say what the connection is: a TLS ClientHello (its SNI and
// whether it uses ECH), or something else. Something else is served as HTTP by
// the proxy's own HTTP server (or spliced, on a `tcp:` rule): the proxy never
// guesses from a few bytes whether a stream "is HTTP". Bounded in bytes (by the
// ClientHello parser) and in time (here).

import type net from 'node:net'
import type { TlsObservation } from '../policy/index.js'
import { looksLikeTls, parseClientHello } from './sniff/client-hello.js'

const TLS_MAJOR_VERSION = 0x03

export interface PeekResult {
  /** `other`: the first bytes are not a TLS handshake record. */
  readonly payload: 'tls' | 'other'
  /** Everything read from the client so far; it goes upstream first if the tunnel is allowed. */
  readonly buffered: Buffer
  readonly tls?: TlsObservation
}

export type PeekOutcome =
  | { readonly kind: 'client'; readonly result: PeekResult }
  /** The client sent nothing in time, closed, or errored. */
  | { readonly kind: 'silent' | 'closed'; readonly buffered: Buffer }
  /** `serverFirst` won the race: the upstream spoke before the client. */
  | { readonly kind: 'server-first'; readonly buffered: Buffer }

/** Classifies what has arrived so far; undefined while more bytes are needed. */
export function inspect(buffered: Buffer): PeekResult | undefined {
  if (buffered.length === 0) return undefined
  if (!looksLikeTls(buffered[0]!)) return { payload: 'other', buffered }
  if (buffered.length < 2) return undefined
  if (buffered[1] !== TLS_MAJOR_VERSION) return { payload: 'other', buffered }
  const hello = parseClientHello(buffered)
  if (hello.status === 'incomplete') return undefined
  const tls: TlsObservation =
    hello.status === 'ok'
      ? { kind: 'client-hello', sni: hello.sni, ech: hello.ech }
      : { kind: 'invalid', error: hello.error }
  return { payload: 'tls', buffered, tls }
}

/**
 * What a client that started a message (a ClientHello, a request head, or too few bytes
 * to tell) and stopped sending counts as: a ClientHello that cannot be read, which every
 * policy refuses. Never opaque traffic: the rest could follow later, unexamined, once spliced.
 */
function stalled(buffered: Buffer, finishWithinMs: number): PeekResult {
  const error = `the client sent ${buffered.length} bytes of its first message and not the rest within ${finishWithinMs / 1000} s`
  return { payload: 'tls', buffered, tls: { kind: 'invalid', error } }
}

/**
 * Waits for the client's first bytes (starting from `initial`, already read),
 * until they can be classified, the time runs out, or `serverFirst` resolves
 * (the upstream spoke first). Once the client has started, it has `finishWithinMs`
 * to finish its first message, however long `timeoutMs` is (a tunnel where the server
 * may speak first waits its whole idle time for the client): a client that starts
 * and stops is refused (slowloris). Leaves the socket paused and its data listener removed.
 */
export function peekClient(
  socket: net.Socket,
  initial: Buffer,
  timeoutMs: number,
  serverFirst?: Promise<unknown>,
  finishWithinMs = timeoutMs,
): Promise<PeekOutcome> {
  const ready = initial.length > 0 ? inspect(initial) : undefined
  if (ready) return Promise.resolve({ kind: 'client', result: ready })
  return new Promise((resolve) => {
    let buffered = initial
    let settled = false
    let stallTimer: NodeJS.Timeout | undefined
    const finish = (outcome: PeekOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      clearTimeout(stallTimer)
      socket.off('data', onData)
      socket.off('end', onClosed)
      socket.off('close', onClosed)
      socket.off('error', onClosed)
      socket.pause()
      resolve(outcome)
    }
    const startStallTimer = (): void => {
      if (stallTimer || finishWithinMs >= timeoutMs) return
      stallTimer = setTimeout(
        () => finish({ kind: 'client', result: stalled(buffered, finishWithinMs) }),
        finishWithinMs,
      )
    }
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      const result = inspect(buffered)
      if (result) finish({ kind: 'client', result })
      else startStallTimer()
    }
    const onClosed = (): void => finish({ kind: 'closed', buffered })
    const timer = setTimeout(() => finish({ kind: 'silent', buffered }), timeoutMs)
    if (buffered.length > 0) startStallTimer()
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
