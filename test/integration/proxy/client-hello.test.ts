import { spawn } from 'node:child_process'
import net from 'node:net'
import tls from 'node:tls'
import { beforeAll, describe, expect, it } from 'vitest'
import { costGrowth } from '../../helpers/growth.js'
import {
  MAX_CLIENT_HELLO_BYTES,
  MAX_CLIENT_HELLO_RECORDS,
  looksLikeTls,
  parseClientHello,
  type ClientHelloResult,
} from '../../../src/proxy/sniff/client-hello.js'

// ---------------------------------------------------------------------------
// Capturing real ClientHellos: a loopback listener records what a real client
// sends and hangs up as soon as the hello is complete. Only 127.0.0.1 is used;
// api.example.test is pinned to it (curl --resolve, Python/Node connect to the IP).
// ---------------------------------------------------------------------------

const SNI = 'api.example.test'

/** Starts a listener, runs `client(port)`, returns the first connection's bytes once the hello is complete. */
async function captureHello(client: (port: number) => () => void): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  let stopClient: (() => void) | undefined
  try {
    const captured = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('no complete ClientHello within 10 s')),
        10_000,
      )
      server.once('connection', (socket) => {
        let received = Buffer.alloc(0)
        socket.on('error', () => {})
        socket.on('data', (chunk: Buffer) => {
          received = Buffer.concat([received, chunk])
          // Stop at the first verdict: a real client sends nothing more until the server answers.
          if (parseClientHello(received).status !== 'incomplete') {
            clearTimeout(timer)
            socket.destroy()
            resolve(received)
          }
        })
      })
    })
    stopClient = client(port)
    return await captured
  } finally {
    stopClient?.()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function nodeClient(options: tls.ConnectionOptions) {
  return (port: number) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options })
    socket.on('error', () => {})
    return () => socket.destroy()
  }
}

function processClient(command: string, args: string[]): () => void {
  const child = spawn(command, args, { stdio: 'ignore' })
  child.on('error', () => {})
  return () => child.kill('SIGKILL')
}

function curlClient(port: number): () => void {
  return processClient('curl', [
    '--silent',
    '--noproxy',
    '*',
    '--max-time',
    '5',
    '--resolve',
    `${SNI}:${port}:127.0.0.1`,
    '--output',
    '/dev/null',
    `https://${SNI}:${port}/`,
  ])
}

const PYTHON_CLIENT = [
  'import ssl, socket, sys',
  "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)",
  `ssl.create_default_context().wrap_socket(s, server_hostname='${SNI}')`,
].join('\n')

function pythonClient(port: number): () => void {
  return processClient('/usr/bin/python3', ['-c', PYTHON_CLIENT, String(port)])
}

// ---------------------------------------------------------------------------
// TLS structure helpers, written independently of the parser under test.
// ---------------------------------------------------------------------------

interface Extension {
  type: number
  data: Buffer
}

/** Concatenates the payloads of well-formed records. */
function handshakeOf(records: Buffer): Buffer {
  const parts: Buffer[] = []
  for (let off = 0; off < records.length;) {
    const len = records.readUInt16BE(off + 3)
    parts.push(records.subarray(off + 5, off + 5 + len))
    off += 5 + len
  }
  return Buffer.concat(parts)
}

/** Splits a ClientHello handshake message into the fields before extensions and the extension list. */
function splitHandshake(hs: Buffer): { head: Buffer; extensions: Extension[] } {
  const body = hs.subarray(4, 4 + hs.readUIntBE(1, 3))
  let off = 2 + 32
  off += 1 + body[off]!
  off += 2 + body.readUInt16BE(off)
  off += 1 + body[off]!
  const head = body.subarray(0, off)
  const extensions: Extension[] = []
  const end = off + 2 + body.readUInt16BE(off)
  for (off += 2; off < end;) {
    const type = body.readUInt16BE(off)
    const len = body.readUInt16BE(off + 2)
    extensions.push({ type, data: body.subarray(off + 4, off + 4 + len) })
    off += 4 + len
  }
  return { head, extensions }
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

function handshakeMessage(body: Buffer, type = 0x01): Buffer {
  const header = Buffer.alloc(4)
  header[0] = type
  header.writeUIntBE(body.length, 1, 3)
  return Buffer.concat([header, body])
}

function buildHandshake(head: Buffer, extensions: Extension[] | null): Buffer {
  if (extensions === null) return handshakeMessage(head)
  const list = Buffer.concat(
    extensions.map((e) => Buffer.concat([u16(e.type), u16(e.data.length), e.data])),
  )
  return handshakeMessage(Buffer.concat([head, u16(list.length), list]))
}

/** Re-frames handshake bytes into TLS handshake records of at most `size` payload bytes. */
function frame(hs: Buffer, size = 16384, version = 0x0301): Buffer {
  const records: Buffer[] = []
  for (let off = 0; off < hs.length; off += size) {
    const payload = hs.subarray(off, Math.min(off + size, hs.length))
    records.push(Buffer.from([0x16, version >> 8, version & 0xff]), u16(payload.length), payload)
  }
  return Buffer.concat(records)
}

/** Rebuilds a captured hello with an edited extension list, framed into one or more records. */
function editExtensions(hello: Buffer, edit: (exts: Extension[]) => Extension[]): Buffer {
  const { head, extensions } = splitHandshake(handshakeOf(hello))
  return frame(buildHandshake(head, edit(extensions.slice())))
}

function sniData(entries: Array<{ type?: number; name: Buffer }>): Buffer {
  const list = Buffer.concat(
    entries.map((e) => Buffer.concat([Buffer.from([e.type ?? 0]), u16(e.name.length), e.name])),
  )
  return Buffer.concat([u16(list.length), list])
}

function withSni(hello: Buffer, data: Buffer): Buffer {
  return editExtensions(hello, (exts) => exts.map((e) => (e.type === 0 ? { type: 0, data } : e)))
}

function expectOk(result: ClientHelloResult) {
  if (result.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(result)}`)
  return result
}

function expectInvalid(result: ClientHelloResult, error?: RegExp): void {
  expect(result.status).toBe('invalid')
  if (error !== undefined && result.status === 'invalid') expect(result.error).toMatch(error)
}

function hexCase(n: number): [string, number] {
  return [n.toString(16).padStart(4, '0'), n]
}

/** mulberry32: small deterministic PRNG so fuzz failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---------------------------------------------------------------------------

let nodeHello: Buffer
let nodeHelloNoSni: Buffer
let curlHello: Buffer
let pythonHello: Buffer

beforeAll(async () => {
  ;[nodeHello, nodeHelloNoSni, curlHello, pythonHello] = await Promise.all([
    captureHello(nodeClient({ servername: SNI, ALPNProtocols: ['h2', 'http/1.1'] })),
    captureHello(nodeClient({ servername: '' })),
    captureHello(curlClient),
    captureHello(pythonClient),
  ])
})

describe('real ClientHellos captured on loopback', () => {
  it('Node tls.connect: SNI, ALPN, whole capture consumed', () => {
    const r = expectOk(parseClientHello(nodeHello))
    expect(r.sni).toBe(SNI)
    expect(r.alpn).toEqual(['h2', 'http/1.1'])
    expect(r.ech).toBe(false)
    expect(r.legacyVersion).toBe(0x0303)
    expect(r.consumed).toBe(nodeHello.length)
  })

  it('curl: SNI from --resolve name and its default ALPN', () => {
    const r = expectOk(parseClientHello(curlHello))
    expect(r.sni).toBe(SNI)
    expect(r.alpn).toContain('http/1.1')
    expect(r.consumed).toBe(curlHello.length)
  })

  it('Debian python3 ssl: SNI from server_hostname', () => {
    const r = expectOk(parseClientHello(pythonHello))
    expect(r.sni).toBe(SNI)
    expect(r.alpn).toEqual([])
    expect(r.consumed).toBe(pythonHello.length)
  })

  it('Node tls.connect to an IP with servername "" sends no SNI', () => {
    const r = expectOk(parseClientHello(nodeHelloNoSni))
    expect(r.sni).toBeNull()
    expect(splitHandshake(handshakeOf(nodeHelloNoSni)).extensions.map((e) => e.type)).not.toContain(
      0,
    )
  })

  it('looksLikeTls accepts only the handshake content type', () => {
    expect(looksLikeTls(nodeHello[0]!)).toBe(true)
    expect(looksLikeTls(0x17)).toBe(false)
    expect(looksLikeTls('G'.charCodeAt(0))).toBe(false)
  })
})

describe('incremental input', () => {
  it('every proper prefix is incomplete and the last byte gives ok (1 byte at a time)', () => {
    for (const hello of [nodeHello, curlHello, pythonHello]) {
      const whole = expectOk(parseClientHello(hello))
      for (let n = 0; n < hello.length; n++) {
        const r = parseClientHello(hello.subarray(0, n))
        if (r.status !== 'incomplete') throw new Error(`prefix ${n}: ${JSON.stringify(r)}`)
      }
      expect(parseClientHello(Buffer.from(hello))).toEqual(whole)
    }
  })

  it('bytes after the hello (CCS, early data) are ignored and not counted', () => {
    const ccs = Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01])
    const appData = Buffer.from([0x17, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb])
    const r = expectOk(parseClientHello(Buffer.concat([curlHello, ccs, appData])))
    expect(r.consumed).toBe(curlHello.length)
    expect(r.sni).toBe(SNI)
  })

  it('reassembles a hello re-framed into records of N bytes, up to the record bound', () => {
    const hs = handshakeOf(curlHello)
    const smallest = Math.ceil(hs.length / MAX_CLIENT_HELLO_RECORDS)
    for (const size of [smallest, smallest + 1, 100, 250, 512, 16384]) {
      const framed = frame(hs, size, 0x0303)
      const r = expectOk(parseClientHello(framed))
      expect(r.sni).toBe(SNI)
      expect(r.consumed).toBe(framed.length)
    }
    expect(frame(hs, smallest).length).toBe(hs.length + 5 * MAX_CLIENT_HELLO_RECORDS)
  })

  it('refuses a hello split into more than MAX_CLIENT_HELLO_RECORDS records', () => {
    const hs = handshakeOf(curlHello)
    for (const size of [1, 2, 7, Math.ceil(hs.length / MAX_CLIENT_HELLO_RECORDS) - 1]) {
      const framed = frame(hs, size)
      expectInvalid(parseClientHello(framed), /more than 64 records/)
      // Decided once the 64th record is in, without waiting for the rest.
      expectInvalid(parseClientHello(framed.subarray(0, (size + 5) * 64)), /more than 64 records/)
      expect(parseClientHello(framed.subarray(0, (size + 5) * 64 - 1)).status).toBe('incomplete')
    }
  })

  it('re-framed into 64 records and dripped 1 byte at a time', () => {
    const hs = handshakeOf(nodeHello)
    const framed = frame(hs, Math.ceil(hs.length / MAX_CLIENT_HELLO_RECORDS))
    for (let n = 0; n < framed.length; n++) {
      expect(parseClientHello(framed.subarray(0, n)).status).toBe('incomplete')
    }
    expect(expectOk(parseClientHello(framed)).sni).toBe(SNI)
  })

  it('a hello bigger than one record (20 KB padding) is reassembled', () => {
    const big = editExtensions(curlHello, (exts) => [
      ...exts.filter((e) => e.type !== 21),
      { type: 21, data: Buffer.alloc(20_000) },
    ])
    expect(big.length).toBeGreaterThan(16384 + 5)
    const r = expectOk(parseClientHello(big))
    expect(r.sni).toBe(SNI)
    expect(r.consumed).toBe(big.length)
  })
})

describe('ECH, ESNI and ALPN', () => {
  it.each([0xfe0d, 0xfe08, 0xfe09, 0xfe0a, 0xfe0b, 0xfe0c, 0xff02, 0xffce].map(hexCase))(
    'extension 0x%s counts as ECH and keeps the outer SNI',
    (_hex, type) => {
      const hello = editExtensions(nodeHello, (exts) => [
        ...exts,
        { type, data: Buffer.from('00000100010320', 'hex') },
      ])
      const r = expectOk(parseClientHello(hello))
      expect(r.ech).toBe(true)
      expect(r.sni).toBe(SNI)
    },
  )

  it('no ECH flag for an unrelated private-use extension', () => {
    const hello = editExtensions(nodeHello, (exts) => [
      ...exts,
      { type: 0xfe0e, data: Buffer.alloc(3) },
    ])
    expect(expectOk(parseClientHello(hello)).ech).toBe(false)
  })

  it('ALPN names are returned in order; malformed ALPN is refused', () => {
    const alpn = (data: Buffer) =>
      editExtensions(nodeHello, (exts) => exts.map((e) => (e.type === 16 ? { type: 16, data } : e)))
    const names = Buffer.from('\x00\x0c\x02h2\x08http/1.1', 'latin1')
    expect(expectOk(parseClientHello(alpn(names))).alpn).toEqual(['h2', 'http/1.1'])
    expectInvalid(parseClientHello(alpn(Buffer.from('\x00\x04\x02h2\x00', 'latin1'))), /ALPN/)
    expectInvalid(parseClientHello(alpn(Buffer.from('\x00\x05\x02h2', 'latin1'))), /overruns/)
    expectInvalid(parseClientHello(alpn(Buffer.from('\x00\x00', 'latin1'))), /ALPN/)
    expectInvalid(parseClientHello(alpn(Buffer.alloc(0))), /ALPN/)
  })
})

describe('SNI extension', () => {
  it('returns the name exactly as sent (no canonicalisation)', () => {
    const hello = withSni(nodeHello, sniData([{ name: Buffer.from('API.Example.TEST.') }]))
    expect(expectOk(parseClientHello(hello)).sni).toBe('API.Example.TEST.')
  })

  it.each([
    ['no entries', Buffer.from([0x00, 0x00])],
    ['empty extension', Buffer.alloc(0)],
    ['two host_names', sniData([{ name: Buffer.from('a.test') }, { name: Buffer.from('b.test') }])],
    ['empty name', sniData([{ name: Buffer.alloc(0) }])],
    ['NUL in name', sniData([{ name: Buffer.from('allowed.test\x00evil.test', 'latin1') }])],
    ['space in name', sniData([{ name: Buffer.from('a b.test') }])],
    ['DEL in name', sniData([{ name: Buffer.from('a\x7fb.test', 'latin1') }])],
    ['UTF-8 in name', sniData([{ name: Buffer.from('bücher.test', 'utf8') }])],
    ['unknown name type', sniData([{ type: 1, name: Buffer.from('a.test') }])],
    [
      'list shorter than extension',
      Buffer.concat([sniData([{ name: Buffer.from('a.test') }]), Buffer.from([0])]),
    ],
    ['list longer than extension', sniData([{ name: Buffer.from('a.test') }]).subarray(0, 8)],
  ])('refuses %s', (_label, data) => {
    const r = parseClientHello(withSni(nodeHello, data))
    expectInvalid(r)
    if (r.status === 'invalid') expect(r.error).toMatch(/SNI|server_name|host_name/)
  })

  it('refuses a second SNI extension and any other duplicate extension', () => {
    const twoSni = editExtensions(nodeHello, (exts) => [
      ...exts,
      { type: 0, data: sniData([{ name: Buffer.from('evil.test') }]) },
    ])
    expectInvalid(parseClientHello(twoSni), /duplicate extension 0x0000/)
    const twoAlpn = editExtensions(nodeHello, (exts) => [...exts, exts.find((e) => e.type === 16)!])
    expectInvalid(parseClientHello(twoAlpn), /duplicate extension 0x0010/)
  })
})

describe('framing and structure errors', () => {
  const hs = () => handshakeOf(nodeHello)

  it('refuses input that is not a TLS handshake record, on the first byte', () => {
    expectInvalid(parseClientHello(Buffer.from('G')), /not a TLS handshake record/)
    expectInvalid(parseClientHello(Buffer.from([0x17, 0x03, 0x03])), /not a TLS handshake/)
    // SSLv2-compatible hello
    expectInvalid(parseClientHello(Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02])))
    expect(parseClientHello(Buffer.alloc(0)).status).toBe('incomplete')
  })

  it.each([0x0000, 0x0200, 0x0305, 0x0403].map(hexCase))(
    'refuses record version 0x%s',
    (_hex, version) => {
      const framed = frame(hs(), 16384, version)
      expectInvalid(parseClientHello(framed), /record version/)
      // Decided as soon as the version bytes are there.
      expectInvalid(parseClientHello(framed.subarray(0, 3)), /record version/)
    },
  )

  it.each([0x0300, 0x0301, 0x0302, 0x0303, 0x0304].map(hexCase))(
    'accepts record version 0x%s',
    (_hex, version) => {
      expect(expectOk(parseClientHello(frame(hs(), 16384, version))).sni).toBe(SNI)
    },
  )

  it('refuses other handshake types as soon as the type byte arrives', () => {
    const serverHello = handshakeOf(nodeHello)
    serverHello[0] = 0x02
    const framed = frame(serverHello)
    expectInvalid(parseClientHello(framed), /not a ClientHello/)
    expectInvalid(parseClientHello(framed.subarray(0, 6)), /not a ClientHello/)
  })

  it('refuses a non-handshake record between fragments', () => {
    const h = hs()
    const first = frame(h.subarray(0, 100))
    const rest = frame(h.subarray(100))
    for (const type of [0x14, 0x15, 0x17, 0x18]) {
      const interleaved = Buffer.concat([
        first,
        Buffer.from([type, 0x03, 0x03, 0x00, 0x01, 0x00]),
        rest,
      ])
      expectInvalid(parseClientHello(interleaved), /non-handshake record/)
    }
  })

  it('refuses empty and over-long records', () => {
    expectInvalid(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])), /empty/)
    expectInvalid(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00, 0x01])), /empty/)
    expectInvalid(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x01, 0x01])), /16384/)
  })

  it('refuses data after the hello in the record that ends it', () => {
    const h = Buffer.concat([hs(), Buffer.from([0x0f, 0x00, 0x00, 0x00])])
    const framed = frame(h)
    expectInvalid(parseClientHello(framed), /after the ClientHello/)
    // Decided from the lengths alone, before the record has fully arrived.
    expectInvalid(parseClientHello(framed.subarray(0, 9)), /after the ClientHello/)
    // A further record after the one that completes the hello is not looked at.
    const first = frame(hs())
    const split = Buffer.concat([first, frame(Buffer.from([0x0f]))])
    expect(expectOk(parseClientHello(split)).consumed).toBe(first.length)
  })

  it('accepts a hello without extensions (TLS 1.2 style)', () => {
    const { head } = splitHandshake(hs())
    const r = expectOk(parseClientHello(frame(buildHandshake(head, null))))
    expect(r).toMatchObject({ sni: null, ech: false, alpn: [] })
  })

  it('a consistently framed but truncated body is invalid at every cut but one', () => {
    const h = hs()
    const body = h.subarray(4)
    const { head } = splitHandshake(h)
    for (let cut = 0; cut < body.length; cut++) {
      const r = parseClientHello(frame(handshakeMessage(body.subarray(0, cut))))
      // Cutting exactly after compression_methods leaves a valid extension-less hello.
      if (cut === head.length) expect(r.status).toBe('ok')
      else if (r.status !== 'invalid') throw new Error(`cut ${cut}: ${JSON.stringify(r)}`)
    }
  })

  it('refuses inner lengths that overrun and bad fixed fields', () => {
    const { head, extensions } = splitHandshake(hs())
    const mutate = (f: (body: Buffer) => void) => {
      const body = Buffer.from(buildHandshake(head, extensions).subarray(4))
      f(body)
      return parseClientHello(frame(handshakeMessage(body)))
    }
    const sidLenAt = 34
    const cipherLenAt = 35 + head[34]!
    const extLenAt = head.length
    expectInvalid(
      mutate((b) => (b[sidLenAt] = 33)),
      /legacy_session_id/,
    )
    expectInvalid(mutate((b) => (b[sidLenAt] = 0xff)))
    expectInvalid(
      mutate((b) => b.writeUInt16BE(0xfff0, cipherLenAt)),
      /cipher_suites/,
    )
    expectInvalid(mutate((b) => b.writeUInt16BE(b.readUInt16BE(cipherLenAt) - 1, cipherLenAt)))
    expectInvalid(
      mutate((b) => b.writeUInt16BE(b.readUInt16BE(extLenAt) + 1, extLenAt)),
      /extensions/,
    )
    expectInvalid(mutate((b) => b.writeUInt16BE(b.readUInt16BE(extLenAt) - 1, extLenAt)))
    expectInvalid(
      mutate((b) => b.writeUInt16BE(0x0200, 0)),
      /legacy_version/,
    )
    expectInvalid(
      mutate((b) => b.writeUInt16BE(0x0305, 0)),
      /legacy_version/,
    )
    // First extension's length overruns the extension block.
    expectInvalid(
      mutate((b) => b.writeUInt16BE(0xfff0, extLenAt + 4)),
      /extension data/,
    )
    // Bytes after the extension block.
    const trailing = Buffer.concat([buildHandshake(head, extensions).subarray(4), Buffer.from([0])])
    expectInvalid(parseClientHello(frame(handshakeMessage(trailing))), /trailing/)
  })

  it('refuses handshake lengths beyond the bound from the header alone', () => {
    const header = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00])
    expectInvalid(parseClientHello(header), /larger than 65536/)
    expectInvalid(
      parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff])),
    )
  })

  it('accepts a ~60 KB hello but refuses one whose records exceed MAX_CLIENT_HELLO_BYTES', () => {
    const { head, extensions } = splitHandshake(hs())
    const padded = (n: number) =>
      buildHandshake(head, [...extensions, { type: 21, data: Buffer.alloc(n) }])
    const fits = frame(padded(60_000))
    expect(fits.length).toBeLessThanOrEqual(MAX_CLIENT_HELLO_BYTES)
    expect(expectOk(parseClientHello(fits)).sni).toBe(SNI)
    // Content that fits in 4 full records, but 64 smaller records push the framing
    // (record headers included) over the bound.
    const base = padded(0).length
    const edge = padded(MAX_CLIENT_HELLO_BYTES - 4 * 5 - base)
    expect(expectOk(parseClientHello(frame(edge))).consumed).toBe(MAX_CLIENT_HELLO_BYTES)
    const fragmented = frame(edge, Math.ceil(edge.length / MAX_CLIENT_HELLO_RECORDS))
    expect(fragmented.length).toBeGreaterThan(MAX_CLIENT_HELLO_BYTES)
    expectInvalid(parseClientHello(fragmented), /larger than 65536/)
    // One byte more does not fit even in full records: refused from the header.
    const over = frame(padded(MAX_CLIENT_HELLO_BYTES - 4 * 5 - base + 1))
    expectInvalid(parseClientHello(over.subarray(0, 9)), /larger than 65536/)
    // Huge cipher_suites + extensions: a handshake length no framing can fit.
    const huge = handshakeMessage(
      Buffer.concat([
        head.subarray(0, 35 + head[34]!),
        u16(65534),
        Buffer.alloc(65534, 1),
        Buffer.from([1, 0]),
        u16(0),
      ]),
    )
    const r = parseClientHello(frame(huge).subarray(0, 9))
    expectInvalid(r, /larger than/)
  })
})

describe('hostile input never throws, never hangs, never changes its verdict', () => {
  const statuses = new Set(['ok', 'invalid', 'incomplete'])

  function checkResult(input: Buffer, r: ClientHelloResult): void {
    if (!statuses.has(r.status)) throw new Error(`bad status for ${input.toString('hex')}`)
    if (r.status === 'ok') {
      expect(r.consumed).toBeLessThanOrEqual(input.length)
      expect(r.consumed).toBeLessThanOrEqual(MAX_CLIENT_HELLO_BYTES)
      if (r.sni !== null) expect(r.sni).toMatch(/^[\x21-\x7e]+$/)
    }
    if (r.status === 'invalid') expect(r.error.length).toBeGreaterThan(0)
  }

  /** A verdict reached on a prefix must be the verdict for every extension of it. */
  function checkMonotone(input: Buffer, rand: () => number): void {
    const full = parseClientHello(input)
    const cut = Math.floor(rand() * (input.length + 1))
    const prefix = parseClientHello(input.subarray(0, cut))
    checkResult(input, full)
    if (prefix.status !== 'incomplete') expect(full).toEqual(prefix)
  }

  it('random garbage (5000 inputs, some with a plausible record header)', () => {
    const rand = prng(1)
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rand() * 600)
      const input = Buffer.alloc(len)
      for (let j = 0; j < len; j++) input[j] = Math.floor(rand() * 256)
      if (i % 2 === 0 && len >= 9) {
        input.set([0x16, 0x03, Math.floor(rand() * 5), 0x00, Math.floor(rand() * 256), 0x01])
      }
      checkMonotone(input, rand)
    }
  })

  it('bit-flipped, byte-mutated and truncated real hellos (6000 inputs)', () => {
    const rand = prng(2)
    const sources = [nodeHello, curlHello, pythonHello, frame(handshakeOf(curlHello), 100)]
    let ok = 0
    let invalidCount = 0
    for (let i = 0; i < 6000; i++) {
      const input = Buffer.from(sources[i % sources.length]!)
      const flips = 1 + Math.floor(rand() * 4)
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(rand() * input.length)
        if (rand() < 0.7) input[at]! ^= 1 << Math.floor(rand() * 8)
        else input[at] = Math.floor(rand() * 256)
      }
      const trimmed = rand() < 0.2 ? input.subarray(0, Math.floor(rand() * input.length)) : input
      checkMonotone(trimmed, rand)
      const r = parseClientHello(trimmed)
      if (r.status === 'ok') ok++
      if (r.status === 'invalid') invalidCount++
    }
    // Flips in random/cipher bytes leave valid hellos; flips in lengths do not.
    expect(ok).toBeGreaterThan(100)
    expect(invalidCount).toBeGreaterThan(100)
  })

  it('a maximally fragmented, maximally large hello dripped byte by byte stays cheap', () => {
    // 64 records (the most the parser walks per call) of a ~64 KB hello: every
    // call re-parses the buffer, as the proxy does while bytes trickle in.
    const { head, extensions } = splitHandshake(handshakeOf(curlHello))
    const big = buildHandshake(head, [
      ...extensions.filter((e) => e.type !== 21),
      { type: 21, data: Buffer.alloc(60_000) },
    ])
    const framed = frame(big, Math.ceil(big.length / MAX_CLIENT_HELLO_RECORDS))
    for (let n = 1; n < framed.length; n++) {
      if (parseClientHello(framed.subarray(0, n)).status !== 'incomplete')
        throw new Error(`at ${n}`)
    }
    expect(expectOk(parseClientHello(framed)).sni).toBe(SNI)
    // 1-byte records: refused after 64 records instead of walking thousands per call.
    const tiny = frame(big, 1)
    for (let n = 1; n < 64 * 6; n++) parseClientHello(tiny.subarray(0, n))
    expectInvalid(parseClientHello(tiny), /records/)
    // Each call costs what the bytes so far cost: a prefix 4 times longer, about 4 times the work.
    const growth = costGrowth(
      (bytes) => {
        const prefix = framed.subarray(0, bytes)
        for (let i = 0; i < 50; i++) parseClientHello(prefix)
      },
      Math.floor(framed.length / 4),
      framed.length - 1,
    )
    expect(growth).toBeLessThan(8)
  })
})
