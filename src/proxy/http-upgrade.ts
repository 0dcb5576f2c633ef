// The relay for an upgrade request the forwarder approved: only WebSocket is
// ever spliced. The request goes to a checked address; the client's further
// bytes wait until the origin has answered 101 with Upgrade: websocket and the
// right Sec-WebSocket-Accept; only then are the two connections spliced (the
// relay of tunnels, with its idle sweep). Any other answer is relayed as the
// one response it is, and both connections close: nothing else travels on a
// connection whose next bytes no decision has seen.

import { createHash } from 'node:crypto'
import type http from 'node:http'
import type net from 'node:net'
import type { ProxyContext } from './context.js'
import type { Exchange } from './exchange.js'
import { countHeader, upstreamRequestHeaders } from './http-headers.js'
import type { ForwardTarget } from './http-target.js'
import { upstreamFailureResponse } from './refusal.js'
import { meterFor } from './accounting.js'
import { Relay, splice } from './relay.js'
import { dialUpstream, UpstreamError } from './upstream.js'
import {
  closeGracefully,
  headerValue,
  headText,
  readHttpHead,
  responseStatus,
  type HttpHead,
} from './wire.js'

/** A WebSocket key as RFC 6455 §4.1 has clients send it: 16 bytes in base64. */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/

/** The one valid Sec-WebSocket-Key of a request, or undefined. */
export function websocketKeyOf(req: http.IncomingMessage): string | undefined {
  const key = req.headers['sec-websocket-key']
  return countHeader(req.rawHeaders, 'sec-websocket-key') === 1 && WEBSOCKET_KEY.test(key ?? '')
    ? key
    : undefined
}

/** The Sec-WebSocket-Accept a WebSocket server answers `key` with (RFC 6455 §4.2.2). */
function websocketAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
}

/** An origin's answer to an upgrade request: its head and the body bytes read after it. */
interface UpgradeAnswer {
  readonly status: number
  readonly head: HttpHead
  readonly rest: Buffer
}

/** The origin's answer to an upgrade request, or undefined when it sent no valid HTTP/1.x head in time. */
async function readUpgradeAnswer(
  upstream: net.Socket,
  timeoutMs: number,
): Promise<UpgradeAnswer | undefined> {
  const reading = await readHttpHead(upstream, timeoutMs)
  if ('error' in reading) return undefined
  const status = responseStatus(reading.head)
  return status === undefined ? undefined : { status, head: reading.head, rest: reading.rest }
}

/**
 * Whether the server switched to WebSocket, and proved it speaks it: a server
 * that answers 101 but goes on reading HTTP would otherwise take the client's
 * next bytes as requests no decision saw.
 */
function switchedToWebSocket(answer: UpgradeAnswer, key: string): boolean {
  return (
    answer.status === 101 &&
    headerValue(answer.head, 'upgrade')?.toLowerCase() === 'websocket' &&
    headerValue(answer.head, 'sec-websocket-accept') === websocketAccept(key)
  )
}

export interface ApprovedUpgrade {
  readonly req: http.IncomingMessage
  readonly socket: net.Socket
  /** Client bytes read after the request head. */
  readonly head: Buffer
  readonly key: string
  readonly target: ForwardTarget
  readonly addresses: string[] | undefined
}

/** Sends the approved upgrade request to the origin and relays its answer. */
export async function relayUpgrade(
  ctx: ProxyContext,
  u: ApprovedUpgrade,
  exchange: Exchange,
): Promise<void> {
  const { socket, target } = u
  const readBefore = socket.bytesRead
  const writtenBefore = socket.bytesWritten
  exchange.countBytesWith(() => ({
    up: socket.bytesRead - readBefore,
    down: socket.bytesWritten - writtenBefore,
  }))
  let upstream: net.Socket
  try {
    const dialled = await dialUpstream(ctx, target.host, target.port, u.addresses)
    upstream = dialled.socket
    exchange.address = dialled.address
  } catch (err) {
    if (!(err instanceof UpstreamError)) throw err
    const message = err.message
    exchange.fail(`upstream: ${message}`)
    const text = `cannot reach upstream ${target.host}:${target.port} (${message})`
    closeGracefully(socket, upstreamFailureResponse(502, text))
    return exchange.end()
  }
  if (socket.destroyed) {
    upstream.destroy()
    return exchange.end()
  }
  // Before the splice, a failure is a closed upstream, which the answer reader sees.
  upstream.on('error', () => upstream.destroy())
  socket.once('close', () => upstream.destroy())
  // Only the upgrade request goes up at first: the client's further bytes wait until the
  // upstream has switched protocols. Were it to answer anything else, they would be new
  // HTTP requests on an allowed connection that no decision had seen.
  socket.pause()
  upstream.write(upgradeRequestHead(u))
  const answer = await readUpgradeAnswer(upstream, ctx.timeouts.firstBytesMs)
  // A 101 to anything but WebSocket (or another 1xx) is no answer the client asked for,
  // and nothing may travel after it: 502.
  const switched = answer !== undefined && switchedToWebSocket(answer, u.key)
  if (!answer || (answer.status < 200 && !switched)) {
    exchange.fail(
      answer
        ? `upstream: answered ${answer.status} ${headerValue(answer.head, 'upgrade') ?? ''} to a WebSocket upgrade`
        : 'upstream: no valid response to the upgrade request',
    )
    upstream.destroy()
    const text = `${target.host}:${target.port} sent no valid response to the WebSocket upgrade request`
    closeGracefully(socket, upstreamFailureResponse(502, text))
    return exchange.end()
  }
  socket.write(headText(answer.head.startLine, answer.head.headers))
  if (switched) return spliceWebSocket(ctx, u, upstream, answer.rest, exchange)
  socket.once('close', () => exchange.end())
  relayOneAnswer(socket, upstream, answer)
}

/** The upgrade request as decided, whatever else the client's Connection header named. */
function upgradeRequestHead(u: ApprovedUpgrade): string {
  const headers = upstreamRequestHeaders(u.req.rawHeaders, u.req.headers.host ?? '')
  // "close" too: a server that does not switch protocols ends the connection after its
  // answer, so nothing else can travel on it without a decision.
  headers.push('Connection', 'Upgrade, close', 'Upgrade', 'websocket')
  const pairs: [string, string][] = []
  for (let i = 0; i + 1 < headers.length; i += 2)
    pairs.push([headers[i] as string, headers[i + 1] as string])
  return headText(`${u.req.method ?? 'GET'} ${u.target.path} HTTP/1.1`, pairs)
}

/** decide() let only WebSocket through, and the server took it: splice until both close. */
function spliceWebSocket(
  ctx: ProxyContext,
  u: ApprovedUpgrade,
  upstream: net.Socket,
  early: Buffer,
  exchange: Exchange,
): void {
  u.socket.setTimeout(0) // the splice's idle sweep takes over
  if (early.length > 0) u.socket.write(early)
  const relay = new Relay()
  relay.attach(upstream, false)
  const meter = meterFor(ctx, exchange)
  const done = (error?: string): void => {
    if (error !== undefined) exchange.fail(error)
    exchange.end()
  }
  splice(ctx, relay, u.socket, upstream, done, { first: u.head, ...(meter ? { meter } : {}) })
}

/** Not switched: relays the rest of this one answer, then closes both sides. */
function relayOneAnswer(socket: net.Socket, upstream: net.Socket, answer: UpgradeAnswer): void {
  const length = headerValue(answer.head, 'content-length')
  let remaining =
    length !== undefined && /^\d+$/.test(length) ? Number(length) : Number.POSITIVE_INFINITY
  const done = (): void => {
    upstream.destroy()
    closeGracefully(socket)
  }
  const pass = (chunk: Buffer): void => {
    const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk
    remaining -= part.length
    // A client that does not read stops the upstream: the answer is never held in memory.
    if (!socket.write(part)) {
      upstream.pause()
      socket.once('drain', () => upstream.resume())
    }
    if (remaining <= 0) done()
  }
  if (answer.rest.length > 0) pass(answer.rest)
  if (remaining <= 0) return
  upstream.once('close', () => closeGracefully(socket))
  upstream.on('data', pass)
  upstream.resume()
}
