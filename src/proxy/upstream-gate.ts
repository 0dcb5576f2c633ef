// A gate between an HTTP/1.1 upstream connection and undici's parser, so a
// response can be held for a slow client by no longer reading its connection.
//
// Why: the forwarder holds a response for a slow client by pausing undici's
// parser. On a response that ends with its connection (Connection: close, or no
// length) it must not: when the FIN comes while the parser is paused, undici 7
// throws an uncatchable assertion or leaves the response unfinished
// (nodejs/undici#5360, fixed in undici 8, which needs Node 22). Unpaused, such a
// response was buffered whole for a client that reads slowly. Holding the gate
// instead stops reading the socket underneath: the parser never pauses, and the
// origin's bytes and its FIN wait in the kernel (TCP flow control slows the
// origin) until the client drains and the gate lets go.
//
// An h2 connection is never gated: its streams share it, and they are held one
// by one with undici's own pause.

import net from 'node:net'
import { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { buildConnector } from 'undici'

/** The connection undici reads, which can stop reading the socket under it. */
export class UpstreamGate extends Duplex {
  /**
   * The gate undici last read. undici parses a chunk synchronously right after it
   * reads it, so while a response handler runs for an HTTP/1.1 response, this is
   * the gate that response arrived on.
   */
  private static lastRead: UpstreamGate | undefined

  /** The gate of the HTTP/1.1 response whose handler is running (see lastRead). */
  static ofResponseBeingParsed(): UpstreamGate | undefined {
    return UpstreamGate.lastRead
  }

  private holding = false

  constructor(private readonly socket: net.Socket | TLSSocket) {
    super({ allowHalfOpen: true })
    let ended = false
    socket.on('data', (chunk: Buffer) => {
      // undici is not reading (between responses): read on when it does.
      if (!this.push(chunk)) socket.pause()
    })
    socket.on('end', () => {
      ended = true
      this.push(null)
    })
    socket.on('error', (err) => this.destroy(err))
    // After a FIN, undici must see the end before the close: it ends a response
    // framed by its connection.
    socket.on('close', () => {
      if (ended && !this.readableEnded) this.once('end', () => this.destroy())
      else this.destroy()
    })
  }

  /**
   * Stops reading the connection: what comes waits in the kernel, the FIN too.
   * False when it was held already.
   */
  hold(): boolean {
    if (this.holding) return false
    this.holding = true
    this.socket.pause()
    return true
  }

  /** Reads the connection again. */
  release(): void {
    if (!this.holding) return
    this.holding = false
    if (this.readableLength < this.readableHighWaterMark) this.socket.resume()
  }

  override read(size?: number): Buffer | null {
    UpstreamGate.lastRead = this
    return super.read(size) as Buffer | null
  }

  override _read(): void {
    if (!this.holding) this.socket.resume()
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, done: (err?: Error) => void): void {
    this.socket.write(chunk, encoding, (err) => done(err ?? undefined))
  }

  override _final(done: (err?: Error) => void): void {
    this.socket.end(done)
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined)
    done(err)
  }

  // What undici asks of its socket besides the stream (ref/unref, ALPN, and the
  // addresses and counts it puts in its errors).
  ref(): this {
    this.socket.ref()
    return this
  }
  unref(): this {
    this.socket.unref()
    return this
  }
  get alpnProtocol(): string | false | null {
    return 'alpnProtocol' in this.socket ? this.socket.alpnProtocol : null
  }
  get localAddress(): string | undefined {
    return this.socket.localAddress
  }
  get localPort(): number | undefined {
    return this.socket.localPort
  }
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort
  }
  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily
  }
  get timeout(): number | undefined {
    return this.socket.timeout
  }
  get bytesWritten(): number {
    return this.socket.bytesWritten
  }
  get bytesRead(): number {
    return this.socket.bytesRead
  }
}

/**
 * undici's connector, with every HTTP/1.1 connection it makes behind a gate
 * (an h2 connection is passed as it is).
 */
export function gatedConnector(connect: buildConnector.connector): buildConnector.connector {
  return (options, callback) =>
    connect(options, (err, socket) => {
      if (err !== null) return callback(err, null)
      if ((socket as TLSSocket).alpnProtocol === 'h2') return callback(null, socket)
      callback(null, new UpstreamGate(socket) as unknown as net.Socket)
    })
}
