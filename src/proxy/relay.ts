// The relay: once a tunnel is allowed and dialled, bytes go both ways until both
// sides are closed. Client to upstream is a pipe; upstream to client goes
// through the Relay, which reads a directly dialled upstream into reused memory.
// Idle tunnels are found by the context's sweeper, not by a timer per socket.

import type net from 'node:net'
import type { BudgetMeter } from './accounting.js'
import type { ProxyContext } from './context.js'
import type { Sweepable } from './sweeper.js'
import type { OnRead } from './upstream.js'
import { closeGracefully } from './wire.js'

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
export class Relay {
  /** The memory reads go to; replaced when a write to the client still refers to it. */
  private memory: Buffer | undefined
  private held: Buffer[] = []
  private upstream: net.Socket | undefined
  private client: net.Socket | undefined
  /** Called once when, before the splice, the upstream speaks, fails or closes. */
  private notify: (() => void) | undefined
  /** Downloads under a budget: what may go, and what to do when the rest may not. */
  private budget: { readonly meter: BudgetMeter; readonly cut: () => void } | undefined

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

  /**
   * Starts relaying to the client: what was held first, then everything read. With
   * a meter, bytes past the budget are not sent, and `cut` ends the tunnel.
   */
  start(client: net.Socket, budget?: { meter: BudgetMeter; cut: () => void }): void {
    this.client = client
    this.budget = budget
    const held = this.held
    this.held = []
    for (const chunk of held) this.deliver(chunk, false)
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
    if (this.budget) {
      const allowed = this.budget.meter.down(chunk.length)
      if (allowed < chunk.length) {
        if (allowed > 0) client.write(Buffer.from(chunk.subarray(0, allowed)))
        return this.budget.cut()
      }
    }
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

/** Ends a socket's writing side unless it has ended or is gone (end() again only makes an error). */
function endOnce(socket: net.Socket): void {
  if (!socket.destroyed && !socket.writableEnded) socket.end()
}

/**
 * Joins client and upstream until both are closed: what the client sends is
 * written upstream (paused while the upstream's buffer is full), what the
 * upstream sends goes through the relay. Idle tunnels are found by the
 * context's sweeper, which compares the bytes read with its last sweep.
 */
export function splice(
  ctx: ProxyContext,
  relay: Relay,
  client: net.Socket,
  upstream: net.Socket,
  onClose: (error?: string) => void,
  options: SpliceOptions = {},
): void {
  new Splice(ctx, relay, client, upstream, onClose, options.meter).start(options.first)
}

export interface SpliceOptions {
  /** Client bytes read before the splice (the peeked ClientHello): they go upstream first. */
  readonly first?: Buffer
  /** The budget the tunnel's traffic is charged to; past it, the tunnel is cut. */
  readonly meter?: BudgetMeter
}

class Splice implements Sweepable {
  private closed = 0
  private error: string | undefined
  /** Bytes read both ways at the last sweep, and when they last changed. */
  private seen = -1
  private lastActive = 0

  constructor(
    private readonly ctx: ProxyContext,
    private readonly relay: Relay,
    private readonly client: net.Socket,
    private readonly upstream: net.Socket,
    private readonly onClose: (error?: string) => void,
    private readonly meter: BudgetMeter | undefined,
  ) {}

  start(first: Buffer | undefined): void {
    const { client, upstream } = this
    this.ctx.sweeper.add(this)
    client.on('error', this.clientFailed)
    upstream.on('error', this.upstreamFailed)
    client.once('close', this.clientClosed)
    upstream.once('close', this.upstreamClosed)
    if (first && first.length > 0) this.fromClient(first)
    client.on('data', this.fromClient)
    this.relay.start(client, this.meter && { meter: this.meter, cut: this.cut })
    // A side that has ended already (a client that half-closed right after its ClientHello)
    // ends the other now, after what the relay held: its 'end' came before anyone listened.
    if (client.readableEnded) endOnce(upstream)
    else client.once('end', () => endOnce(upstream))
    if (upstream.readableEnded) endOnce(client)
    else upstream.once('end', () => endOnce(client))
    client.resume()
  }

  sweep(now: number): void {
    const read = this.client.bytesRead + this.upstream.bytesRead
    if (read !== this.seen) {
      this.seen = read
      this.lastActive = now
    } else if (now - this.lastActive >= this.ctx.timeouts.idleMs) {
      this.error ??= 'idle timeout'
      this.client.destroy()
      this.upstream.destroy()
    }
  }

  /** Client to upstream; a client that sends faster than the upstream reads waits. */
  private readonly fromClient = (chunk: Buffer): void => {
    const upstream = this.upstream
    // An upstream that is gone can take nothing more; read on (and drop) to see the client's FIN.
    if (upstream.destroyed || upstream.writableEnded) return
    if (this.meter) {
      const allowed = this.meter.up(chunk.length)
      if (allowed < chunk.length) {
        if (allowed > 0) upstream.write(chunk.subarray(0, allowed))
        return this.cut()
      }
    }
    if (!upstream.write(chunk)) {
      this.client.pause()
      upstream.once('drain', this.resumeClient)
    }
  }

  private readonly resumeClient = (): void => {
    this.client.resume()
  }

  /**
   * The budget is used up: what each side was sent up to the limit is flushed, then
   * both close (what they still send is dropped: each side's writing has ended).
   */
  private readonly cut = (): void => {
    this.error ??= this.meter?.exceeded ?? 'budget exceeded'
    closeGracefully(this.client)
    closeGracefully(this.upstream)
  }

  private fail(which: string, err: NodeJS.ErrnoException): void {
    this.error ??= `${which}: ${err.code ?? err.message}`
    this.client.destroy()
    this.upstream.destroy()
  }

  private readonly clientFailed = (err: NodeJS.ErrnoException): void => this.fail('client', err)
  private readonly upstreamFailed = (err: NodeJS.ErrnoException): void => this.fail('upstream', err)

  // When one side is fully gone, let the other flush what it has and finish, and keep reading
  // (and dropping) what it still sends, or it never reads its peer's FIN: a client's TLS
  // close_notify after the server closed held the tunnel, and its log line, until the idle timeout.
  private readonly clientClosed = (): void => {
    endOnce(this.upstream)
    if (!this.upstream.destroyed) this.upstream.resume()
    this.done()
  }

  private readonly upstreamClosed = (): void => {
    endOnce(this.client)
    if (!this.client.destroyed) this.client.resume()
    this.done()
  }

  private done(): void {
    if (++this.closed < 2) return
    this.ctx.sweeper.delete(this)
    this.relay.release()
    this.onClose(this.error)
  }
}
