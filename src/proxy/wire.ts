// What the proxy reads and writes on raw sockets itself, outside Node's HTTP
// server: the CONNECT head on the HTTP proxy port, a parent proxy's answer to
// CONNECT, an origin's answer to a WebSocket upgrade, and every response it
// writes by hand (refusals, CONNECT's 200). One head reader with one size
// limit, one writer of heads, and one way to close a connection after a last
// message.

import { STATUS_CODES } from 'node:http'
import type net from 'node:net'

/**
 * The largest HTTP head (start line, header lines and the blank line) the proxy
 * reads from anyone: a client, an origin or a parent proxy. Also the HTTP
 * servers' maxHeaderSize, so every reader of a head refuses at the same size.
 */
export const MAX_HEAD_BYTES = 32 * 1024

/** How long a connection that is being closed has to read its last message and hang up. */
export const CLOSE_GRACE_MS = 5000

/** A head that is not HTTP/1.x the proxy will read: malformed, or larger than MAX_HEAD_BYTES. */
export class HttpHeadError extends Error {
  override readonly name = 'HttpHeadError'
}

export interface HttpHead {
  /** The request or status line, without its CRLF. */
  readonly startLine: string
  /** Header names and values in order, as sent (values without surrounding blanks). */
  readonly headers: readonly (readonly [string, string])[]
  /** Bytes of the head, the final CRLF CRLF included. */
  readonly size: number
}

const CR = 0x0d
const LF = 0x0a
/** A header line: a token, a colon, and a value of visible characters, spaces, tabs and obs-text. */
// eslint-disable-next-line no-control-regex
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*$/
/** A start line: no control bytes but tabs (a reason phrase may hold any); its shape is the caller's to check. */
// eslint-disable-next-line no-control-regex
const START_LINE = /^[^\x00-\x08\x0a-\x1f\x7f]+$/

/**
 * Reads one HTTP/1.x head from bytes as they arrive. Strict, as Node's HTTP
 * parser is: lines end in CRLF (a bare CR or LF is refused as soon as it is
 * seen), header lines are `name: value` without control bytes (so no folded
 * lines), and the head ends within MAX_HEAD_BYTES. A verdict never changes as
 * more bytes arrive. Bytes are copied once, into memory that grows as needed.
 */
export class HttpHeadReader {
  private memory: Buffer | undefined
  private length = 0
  /** Bytes checked for bare CR and LF so far. */
  private checked = 0

  /**
   * Adds the next bytes: the head and the bytes after it once the head is complete,
   * undefined while it is not. Throws HttpHeadError for a head it will not read.
   */
  push(chunk: Buffer): { head: HttpHead; rest: Buffer } | undefined {
    let data: Buffer
    if (this.length === 0) {
      data = chunk // the usual case: the whole head in the first chunk, read without a copy
    } else {
      data = this.append(chunk)
    }
    const from = Math.max(0, this.checked - 3)
    const end = data.indexOf('\r\n\r\n', from, 'latin1')
    this.checkLineEnds(data, end < 0 ? data.length : end)
    if (end < 0) {
      if (data.length >= MAX_HEAD_BYTES) throw tooLarge()
      if (data === chunk) this.append(chunk)
      return undefined
    }
    if (end + 4 > MAX_HEAD_BYTES) throw tooLarge()
    const head = parseLines(data.toString('latin1', 0, end), end + 4)
    return { head, rest: data.subarray(end + 4) }
  }

  private append(chunk: Buffer): Buffer {
    const needed = this.length + chunk.length
    if (!this.memory || this.memory.length < needed) {
      const grown = Buffer.allocUnsafe(Math.max(needed, 2 * (this.memory?.length ?? 512)))
      this.memory?.copy(grown, 0, 0, this.length)
      this.memory = grown
    }
    chunk.copy(this.memory, this.length)
    this.length = needed
    return this.memory.subarray(0, this.length)
  }

  /** Refuses a CR not followed by LF and an LF not preceded by CR, up to `limit`. */
  private checkLineEnds(data: Buffer, limit: number): void {
    let i = this.checked
    for (; i < limit; i++) {
      const byte = data[i]
      if (byte === LF && (i === 0 || data[i - 1] !== CR))
        throw new HttpHeadError('a line ends in a bare LF (lines end in CRLF)')
      if (byte === CR) {
        // A CR at the end of what has arrived waits for the next byte.
        if (i + 1 >= data.length) break
        if (data[i + 1] !== LF) throw new HttpHeadError('a bare CR (lines end in CRLF)')
      }
    }
    this.checked = i
  }
}

function tooLarge(): HttpHeadError {
  return new HttpHeadError(`the head is larger than ${MAX_HEAD_BYTES} bytes`)
}

function parseLines(text: string, size: number): HttpHead {
  const lines = text.split('\r\n')
  const startLine = lines[0] as string
  if (!START_LINE.test(startLine)) throw new HttpHeadError('malformed start line')
  const headers: [string, string][] = []
  for (let i = 1; i < lines.length; i++) {
    const m = HEADER_LINE.exec(lines[i] as string)
    if (!m) throw new HttpHeadError('malformed header line')
    headers.push([m[1] as string, m[2] as string])
  }
  return { startLine, headers, size }
}

/** Reads a complete head from everything received so far; undefined while incomplete. Throws HttpHeadError. */
export function parseHttpHead(data: Buffer): HttpHead | undefined {
  return new HttpHeadReader().push(data)?.head
}

/** The first value of a header (name in lowercase), or undefined. */
export function headerValue(head: HttpHead, lower: string): string | undefined {
  for (const [name, value] of head.headers) if (name.toLowerCase() === lower) return value
  return undefined
}

/** The status code of a response head (`HTTP/1.x NNN …`), or undefined when it is not one. */
export function responseStatus(head: HttpHead): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(head.startLine)
  return m ? Number(m[1]) : undefined
}

export type HeadReading =
  | { readonly head: HttpHead; readonly rest: Buffer }
  | { readonly error: string; readonly timedOut?: boolean }

/**
 * Reads a head from a socket, within `timeoutMs`: the head and the bytes read
 * after it, or why there is none. Leaves the socket paused.
 */
export function readHttpHead(socket: net.Socket, timeoutMs: number): Promise<HeadReading> {
  return new Promise((resolve) => {
    const reader = new HttpHeadReader()
    const finish = (reading: HeadReading): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('end', onClose)
      socket.pause()
      resolve(reading)
    }
    const onData = (chunk: Buffer): void => {
      try {
        const done = reader.push(chunk)
        if (done) finish(done)
      } catch (err) {
        if (!(err instanceof HttpHeadError)) throw err
        finish({ error: err.message })
      }
    }
    const onClose = (): void => finish({ error: 'the connection closed before a complete head' })
    const timer = setTimeout(
      () => finish({ error: `no complete head within ${timeoutMs} ms`, timedOut: true }),
      timeoutMs,
    )
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.once('end', onClose)
    socket.resume()
  })
}

/** A head as text: the start line, `name: value` lines and the blank line. Values must hold no CR or LF. */
export function headText(startLine: string, headers: Iterable<readonly [string, string]>): string {
  let text = `${startLine}\r\n`
  for (const [name, value] of headers) text += `${name}: ${value}\r\n`
  return `${text}\r\n`
}

/** A complete HTTP/1.1 response for a raw socket; the reason phrase is the status code's own. */
export function rawResponse(
  status: number,
  headers: Readonly<Record<string, string>>,
  body = '',
  reason = STATUS_CODES[status] ?? '',
): string {
  return headText(`HTTP/1.1 ${status} ${reason}`, Object.entries(headers)) + body
}

/**
 * Sends a last message (if any), then closes once the client has hung up, or
 * after CLOSE_GRACE_MS. Its input is read and dropped meanwhile: a socket closed
 * with unread input resets the connection, and the reset can destroy the message
 * before the client has read it. Calling it again on a closing socket does nothing.
 */
export function closeGracefully(socket: net.Socket, last?: string | Buffer): void {
  if (socket.destroyed || socket.writableEnded) return
  socket.on('error', () => socket.destroy())
  socket.resume()
  if (last === undefined) socket.end()
  else socket.end(last)
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
}
