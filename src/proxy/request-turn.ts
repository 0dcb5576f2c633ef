// One plain HTTP request's turn on its client connection. The client may
// leave at any point: while the request is decided, before undici has started
// it (a pooled connection may be busy), or mid-response. Whenever it does, the
// upstream request is not sent, or aborted as soon as undici starts it, so no
// pooled connection is left holding a response nobody reads. A queued response
// of a pipelined request never closes when the connection does: the socket's
// close counts too. A refusal ends its connection (Connection: close): the
// requests pipelined behind it are neither decided nor sent.
//
// Pipelined requests go upstream one at a time, each once the answer to the one
// before has been written (HTTP/1.1 answers them in order anyway), and a
// connection on which too many requests wait is closed. Otherwise a client that
// pipelines to a slow origin and never reads makes the proxy hold every request
// it wrote, and the answers to all of them. (Closed rather than no longer read:
// Node's HTTP server reads a connection itself, and would go on parsing.)

import type http from 'node:http'
import type net from 'node:net'
import type { Dispatcher } from 'undici'
import type { Exchange } from './exchange.js'

/**
 * Requests read on one connection and not yet answered, past which it is closed.
 * No common client pipelines at all; one that sends this many without reading
 * the answers is flooding.
 */
export const MAX_WAITING_REQUESTS = 32

/** What the requests of one client connection share. */
interface ConnectionState {
  /** Requests seen so far. */
  count: number
  /** The number of the request that was refused, if one was. */
  refusedAt: number | undefined
  /** Requests read and not yet finished. */
  open: number
  /** The latest request, until it finishes: the next one goes upstream after it. */
  latest: RequestTurn | undefined
}

const connections = new WeakMap<net.Socket, ConnectionState>()

export class RequestTurn {
  private readonly connection: ConnectionState
  /** This request's number on its connection, from 1. */
  private readonly n: number
  private gone = false
  /** The request was approved and is being forwarded: its line is written when it ends. */
  private forwarding = false
  private controller: Dispatcher.DispatchController | undefined
  /**
   * The request before this one on its connection, if it was unfinished when this one
   * came; dropped once this one finishes, so that finished requests form no chain.
   */
  private before: RequestTurn | undefined
  private done = false
  /** Called once this request has finished (the next one waits for it). */
  private onDone: (() => void) | undefined
  /** The client connection, kept: Node lets go of `req.socket` once a response has finished. */
  private readonly socket: net.Socket
  /** Made only for a request that is held for an approval. */
  private leaving: AbortController | undefined

  constructor(
    readonly req: http.IncomingMessage,
    readonly res: http.ServerResponse,
    readonly exchange: Exchange,
  ) {
    const socket = req.socket
    this.socket = socket
    let connection = connections.get(socket)
    if (!connection) {
      connection = { count: 0, refusedAt: undefined, open: 0, latest: undefined }
      connections.set(socket, connection)
    }
    this.connection = connection
    this.n = ++connection.count
    this.before = connection.latest
    connection.latest = this
    if (++connection.open > MAX_WAITING_REQUESTS) socket.destroy()
    res.once('close', this.finished)
    socket.once('close', this.finished)
  }

  /** A request before this one on its connection was refused. */
  behindRefusal(): boolean {
    const refused = this.connection.refusedAt
    return refused !== undefined && this.n > refused
  }

  /** This request is refused: its connection ends after the answer. */
  refused(): void {
    this.connection.refusedAt ??= this.n
  }

  /**
   * Resolves once the request before this one on its connection has finished;
   * undefined when there is none to wait for (the usual case: no promise).
   */
  turnComes(): Promise<void> | undefined {
    const before = this.before
    if (!before || before.done) return undefined
    return new Promise((resolve) => (before.onDone = resolve))
  }

  /** The client is gone (a destroyed socket emits 'close' only once its handle has closed). */
  left(): boolean {
    return this.gone || this.socket.destroyed || this.res.destroyed
  }

  /** Aborts when the client leaves: a held request stops waiting then. */
  get signal(): AbortSignal {
    this.leaving ??= new AbortController()
    if (this.left()) this.leaving.abort()
    return this.leaving.signal
  }

  /** The request is being forwarded: from now on, its end writes the exchange's line. */
  forward(): void {
    this.forwarding = true
  }

  /** undici started the request upstream; aborted at once if the client left while it waited. */
  started(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.left()) controller.abort(new Error('the client closed the connection'))
  }

  private readonly finished = (): void => {
    this.res.off('close', this.finished)
    this.socket.off('close', this.finished)
    this.done = true
    this.before = undefined
    this.onDone?.()
    const connection = this.connection
    connection.open--
    if (connection.latest === this) connection.latest = undefined
    if (!this.res.writableFinished) {
      this.gone = true
      this.leaving?.abort()
      this.controller?.abort(new Error('the client closed the connection'))
      if (this.forwarding) this.exchange.fail('connection closed before the response completed')
    }
    if (this.forwarding) this.exchange.end()
  }
}
