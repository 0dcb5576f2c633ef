// Server side of the SOCKS5 handshake (RFC 1928, "no authentication" only: a
// sandbox's proxy is reachable from that sandbox alone, so a password would
// prove nothing). The peer is a hostile sandbox, so the
// parser is strict, bounded and never throws out of an event handler:
//
// - input is read incrementally, so a message split across any number of
//   chunks (down to one byte each) parses the same as one sent in one write;
// - the whole handshake has one deadline, so a slow drip cannot hold it open;
// - nothing past the request is consumed: bytes the client pipelined after the
//   request are handed back as `rest`, and the socket is left paused with any
//   later bytes still in its buffer;
// - every failure rejects with a SocksProtocolError; the socket has by then been
//   answered where RFC 1928 defines an answer (`05 FF` for no acceptable
//   method, a full reply with code 0x07 or 0x08 for an unknown command or
//   address type, 0x01 for an unusable domain or a non-zero reserved byte) and
//   closed.
//
// Domain names (ATYP 0x03) are decoded as strict UTF-8: ASCII names come back
// byte for byte, raw UTF-8 names come back as the text they spell, and byte
// sequences that are not valid UTF-8 are rejected rather than replaced with
// U+FFFD, so two different byte strings can never yield the same host. A
// leading byte-order mark is kept, not stripped. Empty names and names with a
// NUL byte are rejected; everything else (case, trailing dot, IDNA, other
// control characters) is left for the policy layer's host canonicalisation.

import type * as net from 'node:net'
import { isIPv4, isIPv6 } from 'node:net'
import { formatIP, ipv6, parseIPv6 } from '../policy/index.js'
import { closeGracefully } from './wire.js'

export type SocksCommand = 'connect' | 'bind' | 'udp-associate'
export type SocksAddressType = 'ipv4' | 'ipv6' | 'domain'

export interface SocksRequest {
  readonly command: SocksCommand
  readonly addressType: SocksAddressType
  /** Dotted quad, RFC 5952 IPv6 text (no brackets), or the domain as sent. */
  readonly host: string
  readonly port: number
  /** Bytes the client sent after the request, before our reply (often the start of TLS). */
  readonly rest: Buffer
}

export interface ReadSocksRequestOptions {
  /** Deadline for the whole handshake (greeting and request). */
  readonly timeoutMs: number
}

export const SocksReplyCode = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const
export type SocksReplyCode = (typeof SocksReplyCode)[keyof typeof SocksReplyCode]

export type SocksErrorReason =
  | 'bad-version'
  | 'no-acceptable-method'
  | 'bad-command'
  | 'bad-address-type'
  | 'bad-address'
  | 'bad-reserved'
  | 'timeout'
  | 'closed'

export class SocksProtocolError extends Error {
  override readonly name = 'SocksProtocolError'
  constructor(
    readonly reason: SocksErrorReason,
    message: string,
    /** What was written to the client before closing, if anything. */
    readonly sent?: Buffer,
  ) {
    super(message)
  }
}

const VERSION = 0x05
const METHOD_NO_AUTH = 0x00
const METHOD_NONE_ACCEPTABLE = 0xff
const ATYP_IPV4 = 0x01
const ATYP_DOMAIN = 0x03
const ATYP_IPV6 = 0x04
const COMMANDS: Readonly<Record<number, SocksCommand>> = {
  0x01: 'connect',
  0x02: 'bind',
  0x03: 'udp-associate',
}

// Stop reading from the socket once this much unparsed input is buffered. Any
// single handshake message is at most 513 bytes, so a pending read is never
// starved; this only bounds what a client can pipeline while we wait.
const MAX_BUFFERED = 64 * 1024
const MAX_TIMER_MS = 2 ** 31 - 1

const EMPTY = Buffer.alloc(0)
const ignoreError = (): void => {}
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Buffers a socket's input and hands it out in exact-length pieces. */
class ByteReader {
  private buf: Buffer = EMPTY
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null =
    null
  private failure: SocksProtocolError | null = null

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onClose)
    socket.on('error', this.onError)
  }

  /** Resolves with exactly n bytes, or rejects once the reader has failed. */
  take(n: number): Promise<Buffer> {
    // Bytes already received are served even after a close: a client may send
    // its request and FIN together, and 'end' can fire before we get to them.
    if (this.buf.length >= n) return Promise.resolve(this.split(n))
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject }
      this.socket.resume()
    })
  }

  fail(err: SocksProtocolError): void {
    if (this.failure) return
    this.failure = err
    const w = this.waiter
    this.waiter = null
    w?.reject(err)
  }

  /** Stops listening and returns whatever was read but not taken. */
  detach(): Buffer {
    this.socket.pause()
    this.socket.removeListener('data', this.onData)
    this.socket.removeListener('end', this.onEnd)
    this.socket.removeListener('close', this.onClose)
    this.socket.removeListener('error', this.onError)
    const rest = this.buf.length === 0 ? EMPTY : Buffer.from(this.buf)
    this.buf = EMPTY
    return rest
  }

  private split(n: number): Buffer {
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  private readonly onData = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([this.buf, bytes])
    const w = this.waiter
    if (w && this.buf.length >= w.n) {
      this.waiter = null
      w.resolve(this.split(w.n))
    }
    if (this.buf.length >= MAX_BUFFERED) this.socket.pause()
  }

  private readonly onEnd = (): void => {
    this.fail(new SocksProtocolError('closed', 'client closed the connection mid-handshake'))
  }

  private readonly onClose = (): void => {
    this.fail(new SocksProtocolError('closed', 'connection closed mid-handshake'))
  }

  private readonly onError = (err: Error): void => {
    this.fail(new SocksProtocolError('closed', `socket error mid-handshake: ${err.message}`))
  }
}

/**
 * Runs the SOCKS5 greeting and reads the request. On
 * success the socket is paused with no listeners of ours left except a no-op
 * 'error' listener (so a reset before the caller attaches its own handlers
 * cannot crash the process); the caller should write `rest` upstream before
 * piping the socket. The caller must not read from the socket while this runs.
 */
export async function readSocksRequest(
  socket: net.Socket,
  opts: ReadSocksRequestOptions,
): Promise<SocksRequest> {
  if (!(opts.timeoutMs > 0)) throw new TypeError('timeoutMs must be a positive number')
  socket.on('error', ignoreError)
  if (socket.destroyed || socket.readableEnded) {
    socket.destroy()
    throw new SocksProtocolError('closed', 'socket already closed')
  }

  const reader = new ByteReader(socket)
  const timer = setTimeout(
    () => reader.fail(new SocksProtocolError('timeout', 'SOCKS handshake timed out')),
    Math.min(opts.timeoutMs, MAX_TIMER_MS),
  )
  try {
    const request = await handshake(reader, socket)
    const rest = reader.detach()
    return { ...request, rest }
  } catch (err) {
    reader.detach()
    const failure =
      err instanceof SocksProtocolError
        ? err
        : new SocksProtocolError('closed', `SOCKS handshake failed: ${String(err)}`)
    closeAfterFailure(socket, failure.sent)
    throw failure
  } finally {
    clearTimeout(timer)
  }
}

async function handshake(
  reader: ByteReader,
  socket: net.Socket,
): Promise<Omit<SocksRequest, 'rest'>> {
  // Greeting: VER NMETHODS METHODS...
  const [ver, nmethods] = await reader.take(2)
  if (ver !== VERSION) throw new SocksProtocolError('bad-version', `not SOCKS5 (version ${ver})`)
  const methods = nmethods ? await reader.take(nmethods) : EMPTY
  if (!methods.includes(METHOD_NO_AUTH)) {
    throw new SocksProtocolError(
      'no-acceptable-method',
      nmethods
        ? 'no acceptable authentication method offered'
        : 'no authentication methods offered',
      Buffer.from([VERSION, METHOD_NONE_ACCEPTABLE]),
    )
  }
  write(socket, Buffer.from([VERSION, METHOD_NO_AUTH]))

  // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
  const [rver, cmd, rsv, atyp] = await reader.take(4)
  if (rver !== VERSION) {
    throw new SocksProtocolError('bad-version', `request is not SOCKS5 (version ${rver})`)
  }
  const command = cmd === undefined ? undefined : COMMANDS[cmd]
  if (!command) {
    throw new SocksProtocolError(
      'bad-command',
      `unknown command 0x${hex(cmd)}`,
      encodeReply(SocksReplyCode.commandNotSupported),
    )
  }
  if (rsv !== 0x00) {
    throw new SocksProtocolError(
      'bad-reserved',
      `reserved byte is 0x${hex(rsv)}, not 0x00`,
      encodeReply(SocksReplyCode.generalFailure),
    )
  }

  let addressType: SocksAddressType
  let host: string
  if (atyp === ATYP_IPV4) {
    addressType = 'ipv4'
    host = Array.from(await reader.take(4)).join('.')
  } else if (atyp === ATYP_IPV6) {
    addressType = 'ipv6'
    host = formatIPv6(await reader.take(16))
  } else if (atyp === ATYP_DOMAIN) {
    addressType = 'domain'
    const [len] = await reader.take(1)
    const badName = (why: string): SocksProtocolError =>
      new SocksProtocolError('bad-address', why, encodeReply(SocksReplyCode.generalFailure))
    if (!len) throw badName('empty domain name')
    const raw = await reader.take(len)
    if (raw.includes(0x00)) throw badName('domain name contains NUL')
    try {
      host = utf8.decode(raw)
    } catch {
      throw badName('domain name is not valid UTF-8')
    }
  } else {
    throw new SocksProtocolError(
      'bad-address-type',
      `unknown address type 0x${hex(atyp)}`,
      encodeReply(SocksReplyCode.addressTypeNotSupported),
    )
  }
  const portBytes = await reader.take(2)
  const port = portBytes.readUInt16BE(0)
  return { command, addressType, host, port }
}

/**
 * Writes a full RFC 1928 reply: VER REP RSV ATYP BND.ADDR BND.PORT. `bound`
 * defaults to 0.0.0.0:0; an IPv4 or IPv6 literal is sent as such, any other
 * host of 1-255 bytes as a domain, and an unusable bound (bad port, empty or
 * overlong name) falls back to 0.0.0.0:0, since clients barely use it. Does
 * nothing if the socket can no longer be written. Never closes the socket: after
 * a failure code the caller must end it (RFC 1928 says "shortly after").
 */
export function sendSocksReply(
  socket: net.Socket,
  code: SocksReplyCode,
  bound?: { host: string; port: number },
): void {
  write(socket, encodeReply(code, bound))
}

function write(socket: net.Socket, bytes: Buffer): void {
  if (socket.destroyed || !socket.writable) return
  socket.write(bytes)
}

function encodeReply(code: SocksReplyCode, bound?: { host: string; port: number }): Buffer {
  const fallback = Buffer.from([VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0])
  if (!bound) return fallback
  const { host, port } = bound
  if (!Number.isInteger(port) || port < 0 || port > 0xffff || typeof host !== 'string') {
    return fallback
  }
  let atyp: number
  let addr: Buffer
  if (isIPv4(host)) {
    atyp = ATYP_IPV4
    addr = Buffer.from(host.split('.').map(Number))
  } else if (isIPv6(host)) {
    const bytes = parseIPv6Bytes(host)
    if (!bytes) return fallback
    atyp = ATYP_IPV6
    addr = bytes
  } else {
    const name = Buffer.from(host, 'utf8')
    if (name.length < 1 || name.length > 255) return fallback
    atyp = ATYP_DOMAIN
    addr = Buffer.concat([Buffer.from([name.length]), name])
  }
  const out = Buffer.alloc(4 + addr.length + 2)
  out[0] = VERSION
  out[1] = code
  out[2] = 0x00
  out[3] = atyp
  addr.copy(out, 4)
  out.writeUInt16BE(port, 4 + addr.length)
  return out
}

/** After a failed handshake: send the answer (if any), then close, without hanging on the peer. */
function closeAfterFailure(socket: net.Socket, answer: Buffer | undefined): void {
  if (!answer || !socket.writable) socket.destroy()
  else closeGracefully(socket, answer)
}

function hex(n: number | undefined): string {
  return (n ?? 0).toString(16).padStart(2, '0')
}

/** RFC 5952 text of a 16-byte IPv6 address (the policy's formatter, from bytes). */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError('an IPv6 address is 16 bytes')
  return formatIP(ipv6(BigInt(`0x${Buffer.from(bytes).toString('hex')}`)))
}

/** IPv6 text (zone id ignored) to its 16 bytes, with the policy's parser. */
function parseIPv6Bytes(text: string): Buffer | undefined {
  const ip = parseIPv6(text.split('%')[0] ?? '')
  return ip ? Buffer.from(ip.value.toString(16).padStart(32, '0'), 'hex') : undefined
}
