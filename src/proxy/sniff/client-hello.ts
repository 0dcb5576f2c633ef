// Incremental TLS ClientHello parser (RFC 8446 §4.1.2, §5.1; RFC 6066 §3; RFC 7301).
//
// The egress proxy peeks at the first bytes of a tunnel to learn the SNI before
// deciding whether to connect upstream. The peer is hostile, so this module is
// pure (no I/O, no state between calls), bounded, and strict: anything a real
// TLS stack would refuse, or that could be read two ways, is `invalid`.
// The caller passes everything received so far on each call; the answer for a
// prefix is `incomplete` until enough bytes have arrived, and a verdict, once
// reached, does not change as more bytes are appended.

/**
 * Upper bound on the records that carry one ClientHello, headers included.
 * Real hellos are ~0.5–2 KB (post-quantum key shares make them ~1.8 KB) and a
 * few exceed one 16 KiB record; nothing legitimate comes close to 64 KiB.
 */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024

/**
 * Upper bound on the number of records that carry one ClientHello. Real clients
 * use one record (a few when the hello exceeds 16 KiB; DPI-evasion tools split
 * it into a handful). The bound keeps each call cheap: the caller re-parses the
 * growing buffer as bytes trickle in, and without it a hello in 1-byte records
 * dripped byte by byte costs seconds of CPU (quadratic in the record count).
 */
export const MAX_CLIENT_HELLO_RECORDS = 64

export type ClientHelloResult =
  | { readonly status: 'incomplete' }
  | {
      readonly status: 'ok'
      /** server_name as sent (not canonicalised), or null without an SNI extension. */
      readonly sni: string | null
      /** An ECH or ESNI extension is present (Chrome also sends GREASE ECH). */
      readonly ech: boolean
      /** ALPN protocol names in the client's order (latin1-decoded opaque bytes). */
      readonly alpn: string[]
      readonly legacyVersion: number
      /** Bytes of the TLS records that carried the whole ClientHello. */
      readonly consumed: number
    }
  | { readonly status: 'invalid'; readonly error: string }

const CONTENT_TYPE_HANDSHAKE = 0x16
const HANDSHAKE_CLIENT_HELLO = 0x01
const RECORD_HEADER_BYTES = 5
const HANDSHAKE_HEADER_BYTES = 4
// RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14 (same in TLS 1.0–1.2).
const MAX_RECORD_PAYLOAD = 16 * 1024
const MIN_RECORD_VERSION = 0x0300
const MAX_RECORD_VERSION = 0x0304

const EXT_SERVER_NAME = 0x0000
const EXT_ALPN = 0x0010
// encrypted_client_hello (RFC 9849 / draft-ietf-tls-esni) and its draft
// codepoints, plus the older ESNI extension. Any of them means the SNI we see
// may only be the outer (public) name.
const ECH_EXTENSIONS: ReadonlySet<number> = new Set([
  0xfe0d, 0xfe08, 0xfe09, 0xfe0a, 0xfe0b, 0xfe0c, 0xff02, 0xffce,
])
const SNI_HOST_NAME = 0x00

const INCOMPLETE: ClientHelloResult = Object.freeze({ status: 'incomplete' })

function invalid(error: string): ClientHelloResult {
  return { status: 'invalid', error }
}

/** Cheap first-byte test: a TLS connection always starts with a handshake record. */
export function looksLikeTls(firstByte: number): boolean {
  return firstByte === CONTENT_TYPE_HANDSHAKE
}

/**
 * Parses the ClientHello at the start of `data` (everything the client has sent
 * so far). Never throws. Bytes after the records that carry the ClientHello
 * (e.g. ChangeCipherSpec or 0-RTT records) are not looked at.
 */
export function parseClientHello(data: Buffer): ClientHelloResult {
  // Handshake-layer state accumulated across records. Only integers are kept
  // while scanning, so re-parsing a slowly growing buffer stays cheap; the
  // message is copied out once, when it is complete.
  const hsHeader: number[] = [] // first 4 handshake bytes, however they were fragmented
  let hsReceived = 0 // handshake bytes in the complete records scanned so far
  let hsTotal = -1 // 4 + ClientHello body length, once the handshake header is known

  let offset = 0
  for (let records = 0; ; records++) {
    // The hello is not complete after this many records, so another one would be needed.
    if (records === MAX_CLIENT_HELLO_RECORDS) {
      return invalid(`ClientHello split into more than ${MAX_CLIENT_HELLO_RECORDS} records`)
    }
    if (offset >= data.length) return INCOMPLETE

    // --- record header, validated byte by byte so garbage is refused early ---
    if (data[offset] !== CONTENT_TYPE_HANDSHAKE) {
      return invalid(
        offset === 0 ? 'not a TLS handshake record' : 'non-handshake record inside the ClientHello',
      )
    }
    const headerAvailable = Math.min(RECORD_HEADER_BYTES, data.length - offset)
    if (headerAvailable >= 2 && data[offset + 1] !== 0x03) {
      return invalid('unsupported TLS record version')
    }
    if (headerAvailable >= 3 && data.readUInt16BE(offset + 1) > MAX_RECORD_VERSION) {
      return invalid('unsupported TLS record version')
    }
    if (headerAvailable < RECORD_HEADER_BYTES) return INCOMPLETE
    const recordLength = data.readUInt16BE(offset + 3)
    // Zero-length handshake fragments are forbidden (RFC 8446 §5.1) and would
    // let a peer send an unbounded run of records that carry nothing.
    if (recordLength === 0) return invalid('empty TLS record')
    if (recordLength > MAX_RECORD_PAYLOAD) return invalid('TLS record longer than 16384 bytes')
    const payloadStart = offset + RECORD_HEADER_BYTES
    const recordEnd = payloadStart + recordLength
    if (recordEnd > MAX_CLIENT_HELLO_BYTES) {
      return invalid(`ClientHello larger than ${MAX_CLIENT_HELLO_BYTES} bytes`)
    }

    // --- handshake header: the first 4 payload bytes, possibly across records ---
    if (hsTotal < 0) {
      const available = Math.min(recordEnd, data.length)
      for (let i = payloadStart; hsHeader.length < HANDSHAKE_HEADER_BYTES && i < available; i++) {
        hsHeader.push(data[i]!)
      }
      const headerError = checkHandshakeHeader(hsHeader)
      if (headerError !== null) return invalid(headerError)
      if (hsHeader.length === HANDSHAKE_HEADER_BYTES) {
        hsTotal = HANDSHAKE_HEADER_BYTES + handshakeBodyLength(hsHeader)
      }
    }
    // A client sends nothing after its ClientHello until the server answers, so
    // a record that carries more than the rest of the hello is not a real client.
    if (hsTotal >= 0 && hsReceived + recordLength > hsTotal) {
      return invalid('unexpected data after the ClientHello')
    }
    if (recordEnd > data.length) return INCOMPLETE

    hsReceived += recordLength
    offset = recordEnd
    if (hsReceived === hsTotal) {
      return parseBody(gatherBody(data, recordEnd, hsTotal), recordEnd)
    }
  }
}

/**
 * Joins the payloads of the (already validated) records in data[0, end) into
 * the handshake message and returns its body, without the 4-byte header. A
 * message in one record (what clients send) is read where it is, without a copy.
 */
function gatherBody(data: Buffer, end: number, messageLength: number): Buffer {
  if (end === RECORD_HEADER_BYTES + messageLength)
    return data.subarray(RECORD_HEADER_BYTES + HANDSHAKE_HEADER_BYTES, end)
  const message = Buffer.allocUnsafe(messageLength)
  let written = 0
  for (let offset = 0; offset < end;) {
    const payloadStart = offset + RECORD_HEADER_BYTES
    const recordEnd = payloadStart + data.readUInt16BE(offset + 3)
    written += data.copy(message, written, payloadStart, recordEnd)
    offset = recordEnd
  }
  return message.subarray(HANDSHAKE_HEADER_BYTES)
}

/** The uint24 length in a 4-byte handshake header (msg_type, length). */
function handshakeBodyLength(header: readonly number[]): number {
  return (header[1]! << 16) | (header[2]! << 8) | header[3]!
}

/** Validates the handshake header bytes seen so far; null when they are acceptable. */
function checkHandshakeHeader(header: readonly number[]): string | null {
  if (header.length >= 1 && header[0] !== HANDSHAKE_CLIENT_HELLO) {
    return 'handshake message is not a ClientHello'
  }
  if (header.length < HANDSHAKE_HEADER_BYTES) return null
  const bodyLength = handshakeBodyLength(header)
  // Smallest framing for the message: every 16 KiB of it needs a record header.
  const messageLength = HANDSHAKE_HEADER_BYTES + bodyLength
  const records = Math.ceil(messageLength / MAX_RECORD_PAYLOAD)
  if (messageLength + records * RECORD_HEADER_BYTES > MAX_CLIENT_HELLO_BYTES) {
    return `ClientHello larger than ${MAX_CLIENT_HELLO_BYTES} bytes`
  }
  return null
}

// --- ClientHello body -------------------------------------------------------

/** Thrown by Reader and always caught by parseBody. */
class Malformed extends Error {}

/**
 * Bounds-checked big-endian cursor over one TLS structure: a range of a buffer,
 * read in place (a vector is a cursor over its own range, not a copy).
 */
class Reader {
  private pos: number

  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
    start = 0,
    private readonly limit = buf.length,
  ) {
    this.pos = start
  }

  get remaining(): number {
    return this.limit - this.pos
  }

  /** Moves past `n` bytes; where they started. */
  private advance(n: number, field: string): number {
    if (n > this.remaining) throw new Malformed(`${field} overruns the ${this.what}`)
    const at = this.pos
    this.pos += n
    return at
  }

  u8(field: string): number {
    return this.buf[this.advance(1, field)] as number
  }

  u16(field: string): number {
    return this.buf.readUInt16BE(this.advance(2, field))
  }

  skip(n: number, field: string): void {
    this.advance(n, field)
  }

  /** A length-prefixed vector (TLS `opaque x<..2^8-1>` or `<..2^16-1>`), as a cursor over it. */
  vector(lengthBytes: 1 | 2, field: string): Reader {
    const length = lengthBytes === 1 ? this.u8(field) : this.u16(field)
    const start = this.advance(length, field)
    return new Reader(this.buf, field, start, start + length)
  }

  /** Moves past a length-prefixed vector; its length. */
  skipVector(lengthBytes: 1 | 2, field: string): number {
    const length = lengthBytes === 1 ? this.u8(field) : this.u16(field)
    this.advance(length, field)
    return length
  }

  /** The unread bytes as latin1 text. */
  text(): string {
    return this.buf.toString('latin1', this.pos, this.limit)
  }

  /** The unread bytes, in place. */
  rest(): Buffer {
    return this.buf.subarray(this.pos, this.limit)
  }

  end(field: string): void {
    if (this.remaining !== 0) throw new Malformed(`trailing bytes after ${field}`)
  }
}

function parseBody(body: Buffer, consumed: number): ClientHelloResult {
  try {
    const r = new Reader(body, 'ClientHello')
    const legacyVersion = r.u16('legacy_version')
    if (legacyVersion < MIN_RECORD_VERSION || legacyVersion > MAX_RECORD_VERSION) {
      return invalid('unsupported ClientHello legacy_version')
    }
    r.skip(32, 'random')
    if (r.skipVector(1, 'legacy_session_id') > 32) {
      return invalid('legacy_session_id longer than 32 bytes')
    }
    const ciphers = r.skipVector(2, 'cipher_suites')
    if (ciphers < 2 || ciphers % 2 !== 0) return invalid('cipher_suites malformed')
    if (r.skipVector(1, 'legacy_compression_methods') < 1) {
      return invalid('legacy_compression_methods empty')
    }

    let sni: string | null = null
    let ech = false
    let alpn: string[] = []
    // Extensions are optional before TLS 1.3: a hello may end after compression.
    if (r.remaining > 0) {
      const list = r.vector(2, 'extensions')
      r.end('extensions')
      // A few dozen types at most: a list is cheaper than a set.
      const seen: number[] = []
      while (list.remaining > 0) {
        const type = list.u16('extension type')
        // RFC 8446 §4.2: at most one extension of each type. Two SNIs could be
        // read differently by us and by the upstream server.
        if (seen.includes(type)) return invalid(`duplicate extension 0x${hex4(type)}`)
        seen.push(type)
        if (type !== EXT_SERVER_NAME && type !== EXT_ALPN) {
          list.skipVector(2, 'extension data')
          if (ECH_EXTENSIONS.has(type)) ech = true
          continue
        }
        const extData = list.vector(2, 'extension data').rest()
        if (type === EXT_SERVER_NAME) {
          const parsed = parseServerName(extData)
          if (typeof parsed !== 'string') return parsed
          sni = parsed
        } else {
          const parsed = parseAlpn(extData)
          if (!Array.isArray(parsed)) return parsed
          alpn = parsed
        }
      }
    }
    return { status: 'ok', sni, ech, alpn, legacyVersion, consumed }
  } catch (err) {
    if (err instanceof Malformed) return invalid(err.message)
    // Unreachable unless this module has a bug; fail closed rather than let a
    // hostile peer crash the proxy.
    return invalid('ClientHello could not be parsed')
  }
}

/** RFC 6066 §3 server_name: exactly one host_name entry, printable ASCII. */
function parseServerName(extData: Buffer): string | ClientHelloResult {
  const bad = (why: string): ClientHelloResult => invalid(`SNI extension malformed: ${why}`)
  const outer = new Reader(extData, 'SNI extension')
  if (outer.remaining < 2) return bad('too short')
  const list = outer.vector(2, 'server_name_list')
  if (outer.remaining !== 0) return bad('trailing bytes')
  if (list.remaining === 0) return bad('no host_name')
  // Name types other than host_name have no defined encoding, so nothing after
  // one can be parsed reliably; refuse rather than guess.
  if (list.u8('name_type') !== SNI_HOST_NAME) return bad('unknown name_type')
  const name = list.vector(2, 'host_name').rest()
  if (list.remaining !== 0) return bad('more than one name')
  if (name.length === 0) return bad('empty host_name')
  for (const byte of name) {
    if (byte === 0) return bad('host_name contains NUL')
    // Visible ASCII only: DNS names in SNI are A-labels (no raw UTF-8, spaces or controls).
    if (byte < 0x21 || byte > 0x7e) return bad('host_name contains non-printable bytes')
  }
  return name.toString('latin1')
}

/** RFC 7301 §3.1: ProtocolNameList of non-empty names. */
function parseAlpn(extData: Buffer): string[] | ClientHelloResult {
  const bad = (why: string): ClientHelloResult => invalid(`ALPN extension malformed: ${why}`)
  const outer = new Reader(extData, 'ALPN extension')
  if (outer.remaining < 2) return bad('too short')
  const list = outer.vector(2, 'protocol_name_list')
  if (outer.remaining !== 0) return bad('trailing bytes')
  if (list.remaining < 2) return bad('empty protocol_name_list')
  const names: string[] = []
  while (list.remaining > 0) {
    const name = list.vector(1, 'protocol name')
    if (name.remaining === 0) return bad('empty protocol name')
    names.push(name.text())
  }
  return names
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0')
}
