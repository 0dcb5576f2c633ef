// Log lines to a file descriptor (stdout), batched. Writes are asynchronous
// (libuv's thread pool, so a slow reader of the pipe never blocks the proxy),
// one at a time, in order; each costs some 25-45 µs of CPU in thread wake-ups
// whatever its size, more than a proxied request's own log line. So a line
// that follows a quiet spell goes out at the end of its event-loop turn, and
// lines that follow a write closely wait for the next, at most MIN_GAP_MS
// after it: a line still appears at once for someone watching `docker logs`,
// and a busy proxy makes at most 1000 / MIN_GAP_MS writes a second. What is
// still pending when the process exits is written synchronously. A reader
// that stops reading (a blocked pipe) makes the writer hold at most
// MAX_PENDING bytes; lines past that are dropped and counted. Lines are
// encoded into the batch's memory as they arrive, and that memory is used
// again for a later batch.

import fs from 'node:fs'

/** Where log lines go: each call gets one complete line, newline included. */
export interface LogDestination {
  write(line: string, important?: boolean): unknown
}

const MAX_PENDING = 8 * 1024 * 1024
const MIN_GAP_MS = 25
/** Bytes the pending buffer starts with; it grows as a batch needs. */
const INITIAL_BYTES = 16 * 1024
/** A buffer larger than this (after a burst) is not kept for the next batch. */
const KEEP_BYTES = 1024 * 1024

/** Writers with lines to write on exit. */
const open = new Set<FdLineWriter>()
let exitHook = false

export class FdLineWriter implements LogDestination {
  /**
   * The lines waiting to be written, encoded as they arrive: a batch is written as
   * it is, without joining strings or copying them again (which cost a request's
   * line more than building it).
   */
  private pending: Buffer = Buffer.allocUnsafe(INITIAL_BYTES)
  private pendingBytes = 0
  /** The memory of the batch being written, and of the last one written (for the next). */
  private inFlight: Buffer | undefined
  private spare: Buffer | undefined
  /** An asynchronous write is in flight. */
  private writing = false
  private scheduled = false
  private dropped = 0
  /** When the last write started (performance.now()). */
  private lastWrite = -Infinity

  constructor(private readonly fd: number) {
    open.add(this)
    if (!exitHook) {
      exitHook = true
      process.once('exit', () => {
        for (const writer of open) writer.flushSync()
      })
    }
  }

  /**
   * Queues a line. When the output falls behind, ordinary lines are dropped (and
   * counted) past MAX_PENDING; `important` ones (refusals) get twice the room, so a
   * flood of allowed decisions cannot push a refusal out of the log.
   */
  write(line: string, important = false): void {
    if (this.pendingBytes + line.length > (important ? 2 * MAX_PENDING : MAX_PENDING)) {
      this.dropped++
      return
    }
    this.append(line)
    if (!this.writing && !this.scheduled) this.schedule()
  }

  private append(text: string): void {
    // UTF-8 takes at most three bytes for each UTF-16 unit.
    const needed = this.pendingBytes + 3 * text.length
    if (needed > this.pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, 2 * this.pending.length))
      this.pending.copy(grown, 0, 0, this.pendingBytes)
      this.pending = grown
    }
    this.pendingBytes += this.pending.write(text, this.pendingBytes)
  }

  /** Writes what is pending soon (at the end of this turn), unless a write is in flight. */
  flush(): void {
    if (!this.writing && this.pendingBytes > 0) {
      this.lastWrite = -Infinity
      if (!this.scheduled) this.schedule()
    }
  }

  private schedule(): void {
    this.scheduled = true
    const wait = this.lastWrite + MIN_GAP_MS - performance.now()
    if (wait <= 0) setImmediate(this.flushNow)
    else setTimeout(this.flushNow, Math.ceil(wait))
  }

  /** Writes what is pending now, blocking; for exit. A write in flight is left to finish. */
  flushSync(): void {
    let buf = this.take()
    if (buf === undefined) return
    for (let tries = 0; buf.length > 0 && tries < 1000; tries++) {
      try {
        buf = buf.subarray(fs.writeSync(this.fd, buf))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return
      }
    }
  }

  /** Stops writing: pending lines are written synchronously, later ones dropped. */
  close(): void {
    this.flushSync()
    open.delete(this)
  }

  /** The pending bytes (with a line about dropped ones), handed over; undefined if none. */
  private take(): Buffer | undefined {
    if (this.pendingBytes === 0 && this.dropped === 0) return undefined
    if (this.dropped > 0) {
      this.append(
        `{"level":"warn","msg":"log lines dropped: the output did not keep up","dropped":${this.dropped}}\n`,
      )
      this.dropped = 0
    }
    const data = this.pending.subarray(0, this.pendingBytes)
    this.inFlight = this.pending
    this.pending = this.spare ?? Buffer.allocUnsafe(INITIAL_BYTES)
    this.spare = undefined
    this.pendingBytes = 0
    return data
  }

  private readonly flushNow = (): void => {
    this.scheduled = false
    if (this.writing) return
    const data = this.take()
    if (data === undefined) return
    this.writing = true
    this.lastWrite = performance.now()
    this.send(data)
  }

  private send(buf: Buffer): void {
    fs.write(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.send(buf), 10)
          return
        }
        // EPIPE, EBADF: nobody reads any more; this batch is lost, later lines are tried again.
        n = buf.length
      }
      if (n < buf.length) {
        this.send(buf.subarray(n))
        return
      }
      this.writing = false
      if ((this.inFlight?.length ?? Infinity) <= KEEP_BYTES) this.spare = this.inFlight
      this.inFlight = undefined
      if (this.pendingBytes > 0 || this.dropped > 0) this.schedule()
    })
  }
}
