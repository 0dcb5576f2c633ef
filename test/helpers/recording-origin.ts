// A loopback origin that records every byte it receives, for the bypass tests:
// they assert on what reached the origin, not on the proxy's internals. It
// answers like a lax origin server would: a 200 for every request head it can
// find (after CRLF CRLF or LF LF), and a 101 for ANY Upgrade header (with the
// WebSocket accept key when it was sent one), after which it keeps recording
// whatever the client says in the new protocol. Optionally speaks TLS (then it
// records the decrypted bytes).
//
// `heads()` reads what was received strictly: request line, Host, no stray
// bytes. What the proxy forwards is written by its own forwarder, so every
// head must read cleanly and name the allowed host; a bypass shows up as a
// head that does not, or as bytes that are no head at all.

import net from 'node:net'
import tls from 'node:tls'
import type { TestCerts } from './certs.js'
import { acceptKey } from './websocket.js'

export interface RecordedHead {
  readonly method: string
  readonly target: string
  readonly version: string
  /** Lowercase names, values as sent. */
  readonly headers: ReadonlyMap<string, string[]>
}

export interface RecordingOrigin {
  readonly port: number
  /** Everything received, per connection, in the order connections were accepted. */
  received(): Buffer[]
  /** Everything received, all connections, as latin1 text (for "never arrived" checks). */
  text(): string
  /**
   * The request heads received, read strictly; throws on bytes that are not a clean
   * head. After a head with Upgrade, the rest of that connection is not read.
   */
  heads(): RecordedHead[]
  /** Connections accepted so far. */
  connections(): number
  /** Connections still open. */
  open(): number
  /** Resolves once `pred()` holds; rejects after `timeoutMs` with what was received. */
  waitFor(pred: () => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

const HEAD_END = /\r?\n\r?\n/

export interface RecordingOriginOptions {
  readonly tls?: TestCerts
  /** The body of every 200. */
  readonly body?: Buffer
  /** Close after every response. */
  readonly close?: boolean
  /**
   * Answer every request with a 101 to this protocol (and no WebSocket accept key),
   * whether it asked to upgrade or not.
   */
  readonly switchTo?: string
  /**
   * Close a connection on which nothing arrived for this long, as servers do with
   * idle kept-alive connections (a client's pool may hold some that were never used).
   */
  readonly idleMs?: number
}

export async function startRecordingOrigin(
  opts: RecordingOriginOptions = {},
): Promise<RecordingOrigin> {
  const chunks: Buffer[][] = []
  const sockets = new Set<net.Socket>()
  const waiters = new Set<() => void>()
  const notify = (): void => {
    for (const w of [...waiters]) w()
  }
  const body = opts.body ?? Buffer.from('origin ok\n')

  const serve = (socket: net.Socket): void => {
    const mine: Buffer[] = []
    chunks.push(mine)
    sockets.add(socket)
    socket.on('error', () => socket.destroy())
    socket.on('close', () => {
      sockets.delete(socket)
      notify()
    })
    let pending = ''
    let upgraded = false
    const idle = opts.idleMs === undefined ? undefined : setTimeout(() => socket.end(), opts.idleMs)
    socket.on('close', () => clearTimeout(idle))
    socket.on('data', (chunk: Buffer) => {
      idle?.refresh()
      mine.push(chunk)
      notify()
      if (upgraded) return
      pending += chunk.toString('latin1')
      for (;;) {
        const m = HEAD_END.exec(pending)
        if (!m) return
        const head = pending.slice(0, m.index)
        pending = pending.slice(m.index + m[0].length)
        const upgrade = opts.switchTo ?? /^upgrade:[ \t]*([^\r\n]*)$/im.exec(head)?.[1]?.trim()
        if (upgrade !== undefined) {
          // A lax origin switches to whatever it is asked for, h2c included.
          upgraded = true
          const key = /^sec-websocket-key:[ \t]*(\S+)/im.exec(head)?.[1]
          const accept =
            key !== undefined && opts.switchTo === undefined
              ? `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n`
              : ''
          socket.write(
            `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${upgrade}\r\nConnection: Upgrade\r\n${accept}\r\n`,
          )
          return
        }
        const close = opts.close === true || /^connection:[ \t]*close/im.test(head)
        socket.write(
          `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`,
        )
        socket.write(body)
        if (close) {
          socket.end()
          return
        }
      }
    })
  }

  const server = opts.tls
    ? tls.createServer({ cert: opts.tls.cert, key: opts.tls.key }, serve)
    : net.createServer(serve)
  // Count TCP connections for TLS too, and never let a failed handshake throw.
  let accepted = 0
  server.on('connection', () => accepted++)
  server.on('tlsClientError', () => undefined)
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port))
  })

  const text = (): string => chunks.map((c) => Buffer.concat(c).toString('latin1')).join('')
  return {
    port,
    received: () => chunks.map((c) => Buffer.concat(c)),
    text,
    heads: () => chunks.flatMap((c) => readHeads(Buffer.concat(c).toString('latin1'))),
    connections: () => accepted,
    open: () => sockets.size,
    waitFor: (pred, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pred()) return
          waiters.delete(check)
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(
            new Error(
              `origin: condition not met in ${timeoutMs} ms; received ${JSON.stringify(text())}`,
            ),
          )
        }, timeoutMs)
        waiters.add(check)
        check()
      }),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP\/1\.[01])$/
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/

/**
 * The heads in one connection's bytes, read strictly (CRLF only, no body bytes
 * expected), up to and including a head that asks to upgrade.
 */
function readHeads(data: string): RecordedHead[] {
  const heads: RecordedHead[] = []
  let rest = data
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0)
      throw new Error(`origin received bytes that are not a complete head: ${JSON.stringify(rest)}`)
    const lines = rest.slice(0, end).split('\r\n')
    rest = rest.slice(end + 4)
    const m = REQUEST_LINE.exec(lines[0] ?? '')
    if (!m) throw new Error(`origin received a malformed request line: ${JSON.stringify(lines[0])}`)
    const headers = new Map<string, string[]>()
    for (const line of lines.slice(1)) {
      const h = HEADER_LINE.exec(line)
      if (!h) throw new Error(`origin received a malformed header line: ${JSON.stringify(line)}`)
      const name = (h[1] as string).toLowerCase()
      headers.set(name, [...(headers.get(name) ?? []), h[2] as string])
    }
    heads.push({ method: m[1] as string, target: m[2] as string, version: m[3] as string, headers })
    if (headers.has('upgrade')) break
  }
  return heads
}
