// The relay: once a tunnel is allowed and dialled, bytes go both ways until both
// sides are closed. Client to upstream is a pipe; upstream to client goes
// through the Relay, which reads a directly dialled upstream into reused memory.
// Idle tunnels are found by the context's sweeper, not by a timer per socket.

import type net from 'node:net'
import type { ProxyContext } from './context.js'
import type { Sweepable } from './sweeper.js'
import type { OnRead } from './upstream.js'

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

/** Ends a socket's writing side unless it has ended or is gone (end() again only makes an error). */
function endOnce(socket: net.Socket): void {
  if (!socket.destroyed && !socket.writableEnded) socket.end()
}

/**
 * Joins client and upstream until both are closed. Client to upstream is a pipe;
 * upstream to client goes through the relay. Idle tunnels are found by the
 * context's sweeper, which compares the bytes read with its last sweep.
 */
export function splice(
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
