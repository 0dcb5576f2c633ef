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
// MAX_PENDING characters; lines past that are dropped and counted.

import fs from 'node:fs'

/** Where log lines go: each call gets one complete line, newline included. */
export interface LogDestination {
  write(line: string, important?: boolean): unknown
}

const MAX_PENDING = 8 * 1024 * 1024
const MIN_GAP_MS = 25

/** Writers with lines to write on exit. */
const open = new Set<FdLineWriter>()
let exitHook = false

export class FdLineWriter implements LogDestination {
  private pending: string[] = []
  private pendingChars = 0
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
    if (this.pendingChars + line.length > (important ? 2 * MAX_PENDING : MAX_PENDING)) {
      this.dropped++
      return
    }
    this.pending.push(line)
    this.pendingChars += line.length
    if (!this.writing && !this.scheduled) this.schedule()
  }

  /** Writes what is pending soon (at the end of this turn), unless a write is in flight. */
  flush(): void {
    if (!this.writing && this.pending.length > 0) {
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
    const data = this.take()
    if (data === undefined) return
    let buf = Buffer.from(data)
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

  private take(): string | undefined {
    if (this.pending.length === 0 && this.dropped === 0) return undefined
    let data = this.pending.length === 1 ? (this.pending[0] as string) : this.pending.join('')
    if (this.dropped > 0) {
      data += `{"level":"warn","msg":"log lines dropped: the output did not keep up","dropped":${this.dropped}}\n`
      this.dropped = 0
    }
    this.pending = []
    this.pendingChars = 0
    return data
  }

  private readonly flushNow = (): void => {
    this.scheduled = false
    if (this.writing) return
    const data = this.take()
    if (data === undefined) return
    this.writing = true
    this.lastWrite = performance.now()
    this.send(Buffer.from(data))
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
      if (this.pending.length > 0 || this.dropped > 0) this.schedule()
    })
  }
}
