// Integration tests for the sandbox DNS server: real clients (Node's resolver, dig, Debian's
// python3 with a hand-built packet) and hostile input, all over loopback. Names are under
// `.test`; no query goes to a real resolver, and nothing dials answerAddress.

import { execFile } from 'node:child_process'
import * as dgram from 'node:dgram'
import { promises as dnsPromises } from 'node:dns'
import { existsSync } from 'node:fs'
import * as net from 'node:net'
import { promisify } from 'node:util'
import * as dnsPacket from 'dns-packet'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { startDnsServer, type DnsQueryEvent } from '../../src/proxy/dns-server.js'

const execFileP = promisify(execFile)

const ANSWER = '10.99.0.1'
const IDLE_MS = 800
const MAX_CONNECTIONS = 6
const DIG = ['/usr/bin/dig', '/bin/dig'].find((p) => existsSync(p))
const PYTHON = '/usr/bin/python3'
const HAS_PYTHON = existsSync(PYTHON)

// --- outbound accounting -----------------------------------------------------------------
// Every socket the tests themselves create is registered here. Anything else that connects
// or sends from this process is the server.
const ours = new WeakSet<object>()
const foreignConnects: string[] = []
const foreignSends: { address: string; port: number }[] = []
const origTcpConnect = net.Socket.prototype.connect
const origUdpConnect = dgram.Socket.prototype.connect
const origUdpSend = dgram.Socket.prototype.send

// --- server ------------------------------------------------------------------------------
const events: DnsQueryEvent[] = []
const decide = vi.fn((name: string, _type: string) => {
  const n = name.toLowerCase()
  if (n === 'throw.test') throw new Error('policy bug')
  return { allow: n === 'allowed.test' || n.endsWith('.pypi.test') }
})
let server: Awaited<ReturnType<typeof startDnsServer>>
let udpPort = 0
let tcpPort = 0

function takeEvents(): DnsQueryEvent[] {
  return events.splice(0)
}

beforeAll(async () => {
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    if (!ours.has(this)) foreignConnects.push(JSON.stringify(args[0]))
    return (origTcpConnect as (...a: unknown[]) => net.Socket).apply(this, args)
  } as typeof net.Socket.prototype.connect
  dgram.Socket.prototype.connect = function (this: dgram.Socket, ...args: unknown[]) {
    if (!ours.has(this)) foreignConnects.push(`udp:${JSON.stringify(args)}`)
    return (origUdpConnect as (...a: unknown[]) => void).apply(this, args)
  } as typeof dgram.Socket.prototype.connect
  dgram.Socket.prototype.send = function (this: dgram.Socket, ...args: unknown[]) {
    if (!ours.has(this)) foreignSends.push({ port: args[1] as number, address: args[2] as string })
    return (origUdpSend as (...a: unknown[]) => void).apply(this, args)
  } as typeof dgram.Socket.prototype.send

  server = await startDnsServer({
    udp: { host: '127.0.0.1', port: 0 },
    tcp: { host: '127.0.0.1', port: 0 },
    answerAddress: ANSWER,
    decide,
    onQuery(event) {
      events.push(event)
      if (event.name === 'onquery-throws.pypi.test') throw new Error('logger bug')
    },
    limits: { tcpIdleTimeoutMs: IDLE_MS, maxTcpConnections: MAX_CONNECTIONS },
  })
  udpPort = server.udpAddress!.port
  tcpPort = server.tcpAddress!.port
})

afterAll(async () => {
  await server?.close()
  net.Socket.prototype.connect = origTcpConnect
  dgram.Socket.prototype.connect = origUdpConnect
  dgram.Socket.prototype.send = origUdpSend
})

beforeEach(() => {
  takeEvents()
  decide.mockClear()
})

// --- wire helpers ------------------------------------------------------------------------

interface QuerySpec {
  id?: number
  /** Header flags word (QR, opcode, RD, …). Default 0x0100 (RD). */
  flags?: number
  /** Name as text, or raw labels. */
  name?: string | Buffer[]
  qtype?: number
  qclass?: number
  /** EDNS OPT record(s) to append. */
  opt?: { payload?: number; version?: number; do?: boolean; name?: Buffer }[]
}

function encodeName(name: string | Buffer[]): Buffer {
  const labels =
    typeof name === 'string'
      ? name
          .split('.')
          .filter((l) => l.length > 0)
          .map((l) => Buffer.from(l, 'latin1'))
      : name
  return Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), l])),
    Buffer.from([0]),
  ])
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/** A query built byte by byte, independent of the codec under test. */
function query(spec: QuerySpec = {}): Buffer {
  const opts = spec.opt ?? []
  const header = Buffer.concat([
    u16(spec.id ?? 0x1234),
    u16(spec.flags ?? 0x0100),
    u16(1),
    u16(0),
    u16(0),
    u16(opts.length),
  ])
  const question = Buffer.concat([
    encodeName(spec.name ?? 'allowed.test'),
    u16(spec.qtype ?? 1),
    u16(spec.qclass ?? 1),
  ])
  const optRecords = opts.map((o) =>
    Buffer.concat([
      o.name ?? Buffer.from([0]),
      u16(41),
      u16(o.payload ?? 1232),
      Buffer.from([0, o.version ?? 0]),
      u16(o.do ? 0x8000 : 0),
      u16(0),
    ]),
  )
  return Buffer.concat([header, question, ...optRecords])
}

interface Parsed {
  id: number
  qr: boolean
  opcode: number
  aa: boolean
  tc: boolean
  rd: boolean
  ra: boolean
  rcode: number
  qdcount: number
  packet: dnsPacket.DecodedPacket
  opt?: dnsPacket.OptAnswer
}

function parse(buf: Buffer): Parsed {
  const flags = buf.readUInt16BE(2)
  const packet = dnsPacket.decode(buf)
  const opt = (packet.additionals ?? []).find((a) => a.type === 'OPT') as
    dnsPacket.OptAnswer | undefined
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    rcode: flags & 0xf,
    qdcount: buf.readUInt16BE(4),
    packet,
    opt,
  }
}

function aRecords(p: Parsed): string[] {
  return (p.packet.answers ?? [])
    .filter((a) => a.type === 'A')
    .map((a) => (a as dnsPacket.StringAnswer).data)
}

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4')
  ours.add(s)
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()))
  return s
}

/** Sends one datagram; resolves with the first reply, or null after `waitMs`. */
async function udpExchange(msg: Buffer, waitMs = 15_000, port = udpPort): Promise<Buffer | null> {
  const s = await udpSocket()
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), waitMs)
      s.once('message', (reply) => {
        clearTimeout(timer)
        resolve(reply)
      })
      s.send(msg, port, '127.0.0.1')
    })
  } finally {
    s.close()
  }
}

function tcpSocket(): net.Socket {
  const s = new net.Socket()
  ours.add(s)
  s.on('error', () => {})
  s.connect(tcpPort, '127.0.0.1')
  return s
}

function frame(msg: Buffer): Buffer {
  return Buffer.concat([u16(msg.length), msg])
}

/** Collects framed responses until `count` have arrived (or the connection closes). */
function readFrames(s: net.Socket, count: number, waitMs = 15_000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const out: Buffer[] = []
    const timer = setTimeout(() => reject(new Error(`got ${out.length}/${count} frames`)), waitMs)
    const done = (): void => {
      clearTimeout(timer)
      s.off('data', onData)
      s.off('close', done)
      resolve(out)
    }
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)))
        buf = buf.subarray(2 + buf.readUInt16BE(0))
      }
      if (out.length >= count) done()
    }
    s.on('data', onData)
    s.on('close', done)
  })
}

function closed(s: net.Socket): Promise<number> {
  const started = Date.now()
  return new Promise((resolve) => {
    if (s.destroyed) resolve(0)
    else s.once('close', () => resolve(Date.now() - started))
  })
}

async function tcpExchange(msg: Buffer): Promise<Buffer> {
  const s = tcpSocket()
  try {
    s.write(frame(msg))
    const [reply] = await readFrames(s, 1)
    if (!reply) throw new Error('no TCP reply')
    return reply
  } finally {
    s.destroy()
  }
}

async function waitFor(cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The liveness probe used after every hostile input: a normal query over both transports. */
async function expectStillServing(): Promise<void> {
  const viaUdp = await udpExchange(query({ id: 0x7777 }))
  expect(viaUdp).not.toBeNull()
  expect(aRecords(parse(viaUdp!))).toEqual([ANSWER])
  const viaTcp = parse(await tcpExchange(query({ id: 0x7778 })))
  expect(viaTcp.id).toBe(0x7778)
  expect(aRecords(viaTcp)).toEqual([ANSWER])
  const probes = takeEvents().slice(-2)
  expect(probes.map((e) => [e.transport, e.outcome])).toEqual([
    ['udp', 'answered'],
    ['tcp', 'answered'],
  ])
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
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

// --- tests -------------------------------------------------------------------------------

describe('Node dns.promises.Resolver', () => {
  it('gets A for allowed names, REFUSED for denied, ENODATA for AAAA, REFUSED for TXT', async () => {
    const resolver = new dnsPromises.Resolver({ timeout: 2000, tries: 1 })
    resolver.setServers([`127.0.0.1:${udpPort}`])

    await expect(resolver.resolve4('allowed.test')).resolves.toEqual([ANSWER])
    await expect(resolver.resolve4('files.pypi.test')).resolves.toEqual([ANSWER])
    await expect(resolver.resolve4('denied.test')).rejects.toMatchObject({ code: 'EREFUSED' })
    await expect(resolver.resolve4('pypi.test')).rejects.toMatchObject({ code: 'EREFUSED' })
    await expect(resolver.resolve6('allowed.test')).rejects.toMatchObject({ code: 'ENODATA' })
    await expect(resolver.resolveTxt('allowed.test')).rejects.toMatchObject({ code: 'EREFUSED' })

    const got = takeEvents()
    expect(got.map((e) => [e.name, e.type, e.transport, e.outcome, e.rcode])).toEqual([
      ['allowed.test', 'A', 'udp', 'answered', 'NOERROR'],
      ['files.pypi.test', 'A', 'udp', 'answered', 'NOERROR'],
      ['denied.test', 'A', 'udp', 'refused', 'REFUSED'],
      ['pypi.test', 'A', 'udp', 'refused', 'REFUSED'],
      ['allowed.test', 'AAAA', 'udp', 'empty', 'NOERROR'],
      ['allowed.test', 'TXT', 'udp', 'refused', 'REFUSED'],
    ])
    for (const e of got) expect(e.client).toMatch(/^127\.0\.0\.1:\d+$/)
    // decide saw each question once, TXT too (which is refused whatever it says).
    expect(decide.mock.calls.map(([name, type]) => [name, type])).toEqual([
      ['allowed.test', 'A'],
      ['files.pypi.test', 'A'],
      ['denied.test', 'A'],
      ['pypi.test', 'A'],
      ['allowed.test', 'AAAA'],
      ['allowed.test', 'TXT'],
    ])
    // Each event carries the decision its answer came from.
    expect(got.map((e) => e.decision)).toEqual([
      { allow: true },
      { allow: true },
      { allow: false },
      { allow: false },
      { allow: true },
      { allow: true },
    ])
  })
})

interface DigResult {
  status: string
  flags: string[]
  answers: string[][]
  edns: string | undefined
  transport: string | undefined
}

async function dig(...args: string[]): Promise<DigResult> {
  const tcp = args.includes('+tcp')
  const { stdout } = await execFileP(DIG!, [
    '@127.0.0.1',
    '-p',
    String(tcp ? tcpPort : udpPort),
    '+tries=1',
    '+time=3',
    ...args,
  ])
  const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? ''
  const flags = (/;; flags: ([a-z ]*);/.exec(stdout)?.[1] ?? '').split(' ').filter(Boolean)
  const answerSection = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(stdout)?.[1] ?? ''
  const answers = answerSection
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(/\s+/))
  const edns = /; EDNS: (.*)/.exec(stdout)?.[1]
  const transport = /;; SERVER: .*\((UDP|TCP)\)/.exec(stdout)?.[1]
  return { status, flags, answers, edns, transport }
}

describe.skipIf(!DIG)('dig (Debian dnsutils)', () => {
  it('answers an allowed A query over UDP and TCP with AA, RD copied, no RA, EDNS 1232', async () => {
    for (const transport of ['UDP', 'TCP']) {
      const r = await dig('allowed.test', 'A', ...(transport === 'TCP' ? ['+tcp'] : []))
      expect(r.transport).toBe(transport)
      expect(r.status).toBe('NOERROR')
      expect(r.flags.sort()).toEqual(['aa', 'qr', 'rd'])
      expect(r.answers).toEqual([['allowed.test.', '30', 'IN', 'A', ANSWER]])
      expect(r.edns).toMatch(/version: 0, flags:; udp: 1232/)
    }
    expect(takeEvents().map((e) => [e.name, e.type, e.transport, e.outcome])).toEqual([
      ['allowed.test', 'A', 'udp', 'answered'],
      ['allowed.test', 'A', 'tcp', 'answered'],
    ])
  })

  it('refuses denied names and other types, answers allowed AAAA empty, and honours +noedns', async () => {
    const denied = await dig('denied.test', 'A')
    expect([denied.status, denied.answers]).toEqual(['REFUSED', []])
    const deniedTcp = await dig('denied.test', 'AAAA', '+tcp')
    expect([deniedTcp.status, deniedTcp.answers]).toEqual(['REFUSED', []])
    const aaaa = await dig('x.pypi.test', 'AAAA')
    expect([aaaa.status, aaaa.answers]).toEqual(['NOERROR', []])
    const mx = await dig('allowed.test', 'MX')
    expect([mx.status, mx.answers]).toEqual(['REFUSED', []])
    const noEdns = await dig('allowed.test', 'A', '+noedns')
    expect(noEdns.status).toBe('NOERROR')
    expect(noEdns.edns).toBeUndefined()
    expect(noEdns.answers).toEqual([['allowed.test.', '30', 'IN', 'A', ANSWER]])
    const norec = await dig('allowed.test', 'A', '+norecurse')
    expect(norec.flags.sort()).toEqual(['aa', 'qr'])

    expect(takeEvents().map((e) => [e.name, e.type, e.transport, e.outcome])).toEqual([
      ['denied.test', 'A', 'udp', 'refused'],
      ['denied.test', 'AAAA', 'tcp', 'refused'],
      ['x.pypi.test', 'AAAA', 'udp', 'empty'],
      ['allowed.test', 'MX', 'udp', 'refused'],
      ['allowed.test', 'A', 'udp', 'answered'],
      ['allowed.test', 'A', 'udp', 'answered'],
    ])
  })

  it('answers an EDNS version 1 query with BADVERS (dig then retries with version 0)', async () => {
    const r = await dig('allowed.test', 'A', '+edns=1')
    expect(r.status).toBe('NOERROR')
    expect(r.answers).toEqual([['allowed.test.', '30', 'IN', 'A', ANSWER]])
    expect(takeEvents().map((e) => [e.outcome, e.rcode])).toEqual([
      ['formerr', 'BADVERS'],
      ['answered', 'NOERROR'],
    ])
  })
})

// A raw query over UDP built with struct, run by Debian's python3 (not pyenv's).
const PY_CLIENT = String.raw`
import json, socket, struct, sys
port, name, qtype, qid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
q = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
for label in name.split('.'):
    q += struct.pack('B', len(label)) + label.encode('ascii')
q += b'\x00' + struct.pack('>HH', qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, ('127.0.0.1', port))
r, _ = s.recvfrom(4096)
rid, flags, qd, an, ns, ar = struct.unpack('>HHHHHH', r[:12])
off = 12
for _ in range(qd):
    while r[off] != 0:
        off += r[off] + 1
    off += 5
answers = []
for _ in range(an):
    if r[off] & 0xc0 == 0xc0:
        off += 2
    else:
        while r[off] != 0:
            off += r[off] + 1
        off += 1
    rtype, rclass, ttl, rdlen = struct.unpack('>HHIH', r[off:off + 10])
    off += 10
    if rtype == 1:
        answers.append({'ip': socket.inet_ntoa(r[off:off + rdlen]), 'ttl': ttl})
    off += rdlen
print(json.dumps({'id': rid, 'flags': flags, 'rcode': flags & 15, 'qd': qd, 'an': an, 'answers': answers}))
`

describe.skipIf(!HAS_PYTHON)('python3 raw struct client', () => {
  async function py(name: string, qtype: number, id: number): Promise<Record<string, unknown>> {
    const { stdout } = await execFileP(PYTHON, [
      '-c',
      PY_CLIENT,
      String(udpPort),
      name,
      String(qtype),
      String(id),
    ])
    return JSON.parse(stdout) as Record<string, unknown>
  }

  it('gets the configured address for an allowed name and REFUSED otherwise', async () => {
    expect(await py('allowed.test', 1, 4242)).toEqual({
      id: 4242,
      flags: 0x8000 | 0x0400 | 0x0100,
      rcode: 0,
      qd: 1,
      an: 1,
      answers: [{ ip: ANSWER, ttl: 30 }],
    })
    expect(await py('denied.test', 1, 4243)).toMatchObject({ id: 4243, rcode: 5, an: 0 })
    expect(await py('allowed.test', 15, 4244)).toMatchObject({ id: 4244, rcode: 5, an: 0 })
    expect(takeEvents().map((e) => [e.name, e.type, e.outcome])).toEqual([
      ['allowed.test', 'A', 'answered'],
      ['denied.test', 'A', 'refused'],
      ['allowed.test', 'MX', 'refused'],
    ])
  })
})

describe('policy surface', () => {
  it('refuses every type but A/AAAA, even when the policy allows the name', async () => {
    const cases: [string, number, string][] = [
      ['allowed.test', 16, 'TXT'],
      ['allowed.test', 15, 'MX'],
      ['allowed.test', 5, 'CNAME'],
      ['allowed.test', 255, 'ANY'],
      ['allowed.test', 65, 'HTTPS'],
      ['allowed.test', 64, 'SVCB'],
      ['allowed.test', 33, 'SRV'],
      ['allowed.test', 252, 'AXFR'],
      ['allowed.test', 4321, 'TYPE4321'],
      ['1.0.99.10.in-addr.arpa', 12, 'PTR'],
    ]
    for (const [name, qtype] of cases) {
      const r = parse((await udpExchange(query({ name, qtype, id: qtype })))!)
      expect([r.id, r.rcode, r.packet.answers?.length]).toEqual([qtype, 5, 0])
      // The question is echoed with its real type number, even ones dns-packet cannot name.
      expect(r.qdcount).toBe(1)
      expect(r.packet.questions?.[0]?.name).toBe(name)
    }
    expect(decide.mock.calls.map(([name, type]) => [name, type])).toEqual(
      cases.map(([name, , type]) => [name, type]),
    )
    expect(takeEvents().map((e) => [e.name, e.type, e.outcome, e.decision])).toEqual(
      cases.map(([name, , type]) => [name, type, 'refused', { allow: name === 'allowed.test' }]),
    )
  })

  it('passes the name to decide as received and echoes it in the answer', async () => {
    const r = parse((await udpExchange(query({ name: 'ALLOWED.Test' })))!)
    expect(r.rcode).toBe(0)
    expect(r.packet.questions).toEqual([{ name: 'ALLOWED.Test', type: 'A', class: 'IN' }])
    expect(r.packet.answers?.[0]).toMatchObject({ name: 'ALLOWED.Test', data: ANSWER, ttl: 30 })
    expect(decide.mock.calls.map(([name, type]) => [name, type])).toEqual([['ALLOWED.Test', 'A']])
    expect(takeEvents().map((e) => e.name)).toEqual(['ALLOWED.Test'])
  })

  it('refuses names that are not host names without consulting the policy', async () => {
    const cases: [Buffer[], string][] = [
      // One label "allowed.test": dns-packet would decode it as the allowed name.
      [[Buffer.from('allowed.test')], 'allowed\\.test'],
      [[Buffer.from('allowed\0'), Buffer.from('test')], 'allowed\\000.test'],
      [[Buffer.from([0x61, 0xff]), Buffer.from('pypi'), Buffer.from('test')], 'a\\255.pypi.test'],
      [[Buffer.from('a b'), Buffer.from('pypi'), Buffer.from('test')], 'a\\032b.pypi.test'],
      [[Buffer.from('a\\b'), Buffer.from('pypi'), Buffer.from('test')], 'a\\\\b.pypi.test'],
      // The root (no labels); found by the dns fuzz target.
      [[], '.'],
    ]
    for (const [labels] of cases) {
      const r = parse((await udpExchange(query({ name: labels })))!)
      expect([r.rcode, r.packet.answers?.length]).toEqual([5, 0])
    }
    expect(decide).not.toHaveBeenCalled()
    expect(takeEvents().map((e) => [e.name, e.outcome])).toEqual(
      cases.map(([, shown]) => [shown, 'refused']),
    )
  })

  it('refuses class CH/ANY, and fails closed when decide throws', async () => {
    for (const qclass of [3, 255]) {
      const r = parse((await udpExchange(query({ qclass })))!)
      expect(r.rcode).toBe(5)
    }
    expect(decide).not.toHaveBeenCalled()
    const r = parse((await udpExchange(query({ name: 'throw.test' })))!)
    expect(r.rcode).toBe(5)
    expect(decide).toHaveBeenCalledTimes(1)
    expect(takeEvents().map((e) => [e.name, e.outcome, e.decision, e.problem])).toEqual([
      ['allowed.test', 'refused', undefined, 'class 3 (only IN is served)'],
      ['allowed.test', 'refused', undefined, 'class 255 (only IN is served)'],
      ['throw.test', 'refused', undefined, 'the policy check failed'],
    ])
  })

  it('keeps answering when onQuery throws', async () => {
    const r = parse((await udpExchange(query({ name: 'onquery-throws.pypi.test' })))!)
    expect(aRecords(r)).toEqual([ANSWER])
    expect(takeEvents().map((e) => e.outcome)).toEqual(['answered'])
    await expectStillServing()
  })

  it('copies ID and RD, sets QR and AA, never RA', async () => {
    for (const flags of [0x0000, 0x0100, 0x0010 /* CD */]) {
      const r = parse((await udpExchange(query({ id: 0xbeef, flags })))!)
      expect([r.id, r.qr, r.aa, r.ra, r.rd, r.tc, r.opcode]).toEqual([
        0xbeef,
        true,
        true,
        false,
        flags === 0x0100,
        false,
        0,
      ])
    }
    expect(takeEvents()).toHaveLength(3)
  })

  it('answers other opcodes NOTIMP and never answers a response', async () => {
    const notify = parse((await udpExchange(query({ id: 9, flags: 4 << 11 })))!)
    expect([notify.id, notify.rcode, notify.opcode, notify.qr]).toEqual([9, 4, 4, true])
    const status = parse((await udpExchange(query({ id: 10, flags: (2 << 11) | 0x0100 })))!)
    expect([status.rcode, status.opcode, status.rd]).toEqual([4, 2, true])
    // QR=1: dropped silently, no event.
    expect(await udpExchange(query({ flags: 0x8000 }), 300)).toBeNull()
    expect(decide).not.toHaveBeenCalled()
    expect(takeEvents().map((e) => [e.outcome, e.rcode, e.problem])).toEqual([
      ['notimp', 'NOTIMP', 'opcode 4 (only QUERY is served)'],
      ['notimp', 'NOTIMP', 'opcode 2 (only QUERY is served)'],
    ])
  })
})

describe('EDNS and response size', () => {
  it('includes an OPT record (payload 1232, DO copied) only when the query has one', async () => {
    const withOpt = parse((await udpExchange(query({ opt: [{ payload: 4096, do: true }] })))!)
    expect(withOpt.opt).toMatchObject({ udpPayloadSize: 1232, ednsVersion: 0, flag_do: true })
    expect(withOpt.opt?.options).toEqual([])
    const refused = parse((await udpExchange(query({ name: 'denied.test', opt: [{}] })))!)
    expect([refused.rcode, refused.opt?.udpPayloadSize, refused.opt?.flag_do]).toEqual([
      5,
      1232,
      false,
    ])
    const without = parse((await udpExchange(query()))!)
    expect(without.opt).toBeUndefined()
    expect(without.packet.additionals).toEqual([])
    expect(takeEvents().map((e) => e.outcome)).toEqual(['answered', 'refused', 'answered'])
  })

  it('answers BADVERS to EDNS version 1 and FORMERR to two OPT records or a non-root OPT', async () => {
    const badvers = parse((await udpExchange(query({ opt: [{ version: 1 }] })))!)
    // BADVERS = 16: upper bits in the OPT record, lower 4 bits (0) in the header.
    expect([badvers.rcode, badvers.opt?.extendedRcode, badvers.packet.answers?.length]).toEqual([
      0, 1, 0,
    ])
    const twoOpts = parse((await udpExchange(query({ opt: [{}, {}] })))!)
    expect(twoOpts.rcode).toBe(1)
    const nonRoot = parse((await udpExchange(query({ opt: [{ name: encodeName('x.test') }] })))!)
    expect(nonRoot.rcode).toBe(1)
    expect(decide).not.toHaveBeenCalled()
    const bad = 'more than one OPT record, or one not owned by the root'
    expect(takeEvents().map((e) => [e.outcome, e.rcode, e.problem])).toEqual([
      ['formerr', 'BADVERS', 'EDNS version 1 (only 0 is served)'],
      ['formerr', 'FORMERR', bad],
      ['formerr', 'FORMERR', bad],
    ])
  })

  it('truncates a UDP answer that would exceed 512 bytes without EDNS; TCP gets it whole', async () => {
    // 4 labels of 60 bytes + pypi.test: a 252-byte name, so question + uncompressed answer > 512.
    const long = ['a', 'b', 'c', 'd'].map((c) => c.repeat(60)).join('.') + '.pypi.test'
    const udp = await udpExchange(query({ name: long }))
    expect(udp!.length).toBeLessThanOrEqual(512)
    const truncated = parse(udp!)
    expect([truncated.rcode, truncated.tc, truncated.packet.answers?.length]).toEqual([0, true, 0])
    expect(truncated.packet.questions?.[0]?.name).toBe(long)

    const edns = parse((await udpExchange(query({ name: long, opt: [{ payload: 1232 }] })))!)
    expect([edns.tc, aRecords(edns)]).toEqual([false, [ANSWER]])
    // A client advertising less than 512 still gets 512 (RFC 6891 §6.2.5).
    const tiny = await udpExchange(query({ name: long, opt: [{ payload: 100 }] }))
    expect(parse(tiny!).tc).toBe(true)
    expect(tiny!.length).toBeLessThanOrEqual(512)

    const tcp = parse(await tcpExchange(query({ name: long })))
    expect([tcp.tc, aRecords(tcp)]).toEqual([false, [ANSWER]])

    expect(takeEvents().map((e) => [e.transport, e.outcome, e.truncated ?? false])).toEqual([
      ['udp', 'answered', true],
      ['udp', 'answered', false],
      ['udp', 'answered', true],
      ['tcp', 'answered', false],
    ])
  })
})

describe('malformed input over UDP', () => {
  it('drops a truncated header silently', async () => {
    expect(await udpExchange(Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00]), 300)).toBeNull()
    expect(await udpExchange(Buffer.alloc(0), 300)).toBeNull()
    expect(takeEvents()).toEqual([])
    await expectStillServing()
  })

  it('answers FORMERR to a header claiming 5 questions, and to 0 questions', async () => {
    const five = Buffer.concat([u16(0xabcd), u16(0x0100), u16(5), u16(0), u16(0), u16(0)])
    const r = parse((await udpExchange(five))!)
    expect([r.id, r.rcode, r.qr, r.qdcount, r.rd]).toEqual([0xabcd, 1, true, 0, true])
    // Five well-formed questions are still not one question.
    const fiveReal = Buffer.concat([five, ...Array.from({ length: 5 }, () => query().subarray(12))])
    expect(parse((await udpExchange(fiveReal))!).rcode).toBe(1)
    const zero = Buffer.concat([u16(0xabce), u16(0), u16(0), u16(0), u16(0), u16(0)])
    expect(parse((await udpExchange(zero))!).rcode).toBe(1)
    expect(decide).not.toHaveBeenCalled()
    expect(takeEvents().map((e) => [e.name, e.outcome, e.problem])).toEqual([
      ['', 'formerr', 'the message could not be read'],
      ['allowed.test', 'formerr', '5 questions (exactly one is served)'],
      ['', 'formerr', '0 questions (exactly one is served)'],
    ])
    await expectStillServing()
  })

  it('answers FORMERR to compression-pointer loops and forward pointers', async () => {
    const header = Buffer.concat([u16(0x0101), u16(0x0100), u16(1), u16(0), u16(0), u16(0)])
    const tail = Buffer.concat([u16(1), u16(1)])
    const packets = [
      // Name at 12 is a pointer to itself.
      Buffer.concat([header, Buffer.from([0xc0, 12]), tail]),
      // 12 -> 14 -> 12.
      Buffer.concat([header, Buffer.from([0xc0, 14, 0xc0, 12]), tail]),
      // A label, then a pointer back to the label's start (a cycle after one label).
      Buffer.concat([header, Buffer.from([1, 0x61, 0xc0, 12]), tail]),
      // Reserved label type 0x40.
      Buffer.concat([header, Buffer.from([0x41, 0x61, 0]), tail]),
      // Label running past the end of the packet.
      Buffer.concat([header, Buffer.from([60, 0x61, 0x62])]),
      // Question cut short after the name.
      Buffer.concat([header, encodeName('allowed.test'), Buffer.from([0])]),
    ]
    for (const p of packets) {
      const r = parse((await udpExchange(p))!)
      expect([r.id, r.rcode, r.qdcount]).toEqual([0x0101, 1, 0])
    }
    expect(decide).not.toHaveBeenCalled()
    expect(takeEvents().map((e) => e.outcome)).toEqual(packets.map(() => 'formerr'))
    await expectStillServing()
  })

  it('answers FORMERR to an oversized datagram without parsing it', async () => {
    const big = Buffer.concat([query({ id: 0x0b16 }), Buffer.alloc(5000)])
    const r = parse((await udpExchange(big))!)
    expect([r.id, r.rcode]).toEqual([0x0b16, 1])
    expect(decide).not.toHaveBeenCalled()
    expect(takeEvents().map((e) => [e.name, e.outcome, e.problem])).toEqual([
      ['', 'formerr', 'the message is longer than 4096 bytes'],
    ])
  })

  it('survives random and mutated packets, answering exactly the ones it logs', async () => {
    const rand = prng(0x15012)
    const packets: Buffer[] = []
    for (let i = 0; i < 400; i++) {
      const b = Buffer.alloc(Math.floor(rand() * 300))
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256)
      // Clear QR on most so they are not dropped as responses, and the opcode on half so
      // they get past the NOTIMP check into the parser.
      if (b.length > 2 && i % 4 !== 0) b[2]! &= i % 2 === 0 ? 0x07 : 0x7f
      packets.push(b)
    }
    const base = query({ name: 'files.pypi.test', opt: [{}] })
    for (let i = 0; i < 400; i++) {
      const b = Buffer.from(base)
      const flips = 1 + Math.floor(rand() * 3)
      for (let k = 0; k < flips; k++) {
        b[2 + Math.floor(rand() * (b.length - 2))] = Math.floor(rand() * 256)
      }
      b[2]! &= 0x7f
      packets.push(b)
    }

    const s = await udpSocket()
    const replies: Buffer[] = []
    s.on('message', (m) => replies.push(m))
    // In batches, so neither side's socket buffer overflows and drops datagrams.
    for (let i = 0; i < packets.length; i++) {
      s.send(packets[i]!, udpPort, '127.0.0.1')
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5))
    }
    // A sentinel query from the same socket: when it is answered, everything before it was handled.
    const sentinelId = 0xfffe
    const sentinelSeen = new Promise<void>((resolve) => {
      s.on('message', (m) => {
        if (m.length >= 12 && m.readUInt16BE(0) === sentinelId && aRecords(parse(m)).length) {
          resolve()
        }
      })
    })
    await new Promise((r) => setTimeout(r, 100))
    s.send(query({ id: sentinelId }), udpPort, '127.0.0.1')
    await sentinelSeen
    const port = s.address().port
    s.close()

    const logged = takeEvents().filter((e) => e.client === `127.0.0.1:${port}`)
    // Every reply corresponds to exactly one event and vice versa (the sentinel included).
    expect(replies.length).toBe(logged.length)
    expect(logged.at(-1)).toMatchObject({ name: 'allowed.test', outcome: 'answered' })
    const fuzzEvents = logged.slice(0, -1)
    expect(fuzzEvents.length).toBeGreaterThan(100)
    // Every reply is a well-formed response to a query.
    for (const m of replies) expect(parse(m).qr).toBe(true)
    // Mutations may produce other allowed or denied A/AAAA questions; only names the test
    // policy allows can be answered, and only with the configured address.
    for (const e of fuzzEvents) {
      if (e.outcome === 'answered' || e.outcome === 'empty') {
        expect(e.name.toLowerCase().endsWith('.pypi.test') || e.name === 'allowed.test').toBe(true)
      }
    }
    for (const m of replies) {
      for (const a of parse(m).packet.answers ?? []) expect(a).toMatchObject({ data: ANSWER })
    }
    await expectStillServing()
  })
})

describe('TCP', () => {
  it('answers pipelined queries on one connection, in order, and frames split byte by byte', async () => {
    const s = tcpSocket()
    const frames = readFrames(s, 4)
    s.write(
      Buffer.concat([
        frame(query({ id: 1 })),
        frame(query({ id: 2, name: 'denied.test' })),
        frame(query({ id: 3, qtype: 28 })),
      ]),
    )
    const split = frame(query({ id: 4, name: 'x.pypi.test' }))
    for (const byte of split) {
      s.write(Buffer.from([byte]))
      await new Promise((r) => setTimeout(r, 1))
    }
    const replies = (await frames).map(parse)
    s.destroy()
    expect(replies.map((r) => [r.id, r.rcode, aRecords(r)])).toEqual([
      [1, 0, [ANSWER]],
      [2, 5, []],
      [3, 0, []],
      [4, 0, [ANSWER]],
    ])
    expect(takeEvents().map((e) => [e.transport, e.outcome])).toEqual([
      ['tcp', 'answered'],
      ['tcp', 'refused'],
      ['tcp', 'empty'],
      ['tcp', 'answered'],
    ])
  })

  it('drops a frame too short for a header but keeps the connection', async () => {
    const s = tcpSocket()
    const frames = readFrames(s, 1)
    s.write(Buffer.concat([frame(Buffer.from([1, 2, 3])), frame(query({ id: 5 }))]))
    const [reply] = await frames
    s.destroy()
    expect(parse(reply!).id).toBe(5)
    expect(takeEvents().map((e) => e.outcome)).toEqual(['answered'])
  })

  it('closes a connection announcing a 65535-byte frame, and leaks nothing when the client leaves', async () => {
    // Announce 65535 bytes, send a few, then close.
    const a = tcpSocket()
    await new Promise((r) => a.once('connect', r))
    a.end(Buffer.concat([u16(65535), Buffer.alloc(10)]))
    await closed(a)
    // Announce 65535 bytes and stay: the server must hang up on its own, for the frame (on a
    // server whose idle timeout is far longer than the test may run, so it cannot be that).
    const patient = await startDnsServer({
      tcp: { host: '127.0.0.1', port: 0 },
      answerAddress: ANSWER,
      decide,
      limits: { tcpIdleTimeoutMs: 10 * 60_000 },
    })
    try {
      const b = new net.Socket()
      ours.add(b)
      b.on('error', () => {})
      b.connect(patient.tcpAddress!.port, '127.0.0.1')
      b.write(u16(65535))
      await closed(b)
      await waitFor(() => patient.openTcpConnections() === 0)
    } finally {
      await patient.close()
    }
    await waitFor(() => server.openTcpConnections() === 0)
    expect(takeEvents()).toEqual([])
    await expectStillServing()
  })

  it('leaks nothing when a client sends half a frame and closes', async () => {
    const s = tcpSocket()
    await new Promise((r) => s.once('connect', r))
    await waitFor(() => server.openTcpConnections() === 1)
    s.end(frame(query()).subarray(0, 9))
    await closed(s)
    await waitFor(() => server.openTcpConnections() === 0)
    expect(takeEvents()).toEqual([])
    await expectStillServing()
  })

  it('closes an idle connection that sends nothing after the idle timeout', async () => {
    const s = tcpSocket()
    const elapsed = closed(s)
    await new Promise((r) => s.once('connect', r))
    await waitFor(() => server.openTcpConnections() === 1)
    // Other clients are served while it idles.
    await expectStillServing()
    expect(await elapsed).toBeGreaterThanOrEqual(IDLE_MS - 50)
    await waitFor(() => server.openTcpConnections() === 0)
    expect(takeEvents()).toEqual([])
  })

  it('stops reading from a client that never reads its answers, then drops it when idle', async () => {
    const s = tcpSocket()
    await new Promise((r) => s.once('connect', r))
    s.pause()
    // Far more pipelined queries, in one go, than loopback's socket buffers can hold in both
    // directions (answers the client never reads, queries the server has not read yet).
    const perBatch = 10_000
    const batch = Buffer.concat(Array.from({ length: perBatch }, () => frame(query({ id: 8 }))))
    const batches = Math.ceil((64 * 1024 * 1024) / batch.length)
    for (let i = 0; i < batches; i++) s.write(batch)
    const sent = batches * perBatch
    // The server stops reading once its answers back up; its idle timeout then drops the client.
    await waitFor(() => server.openTcpConnections() === 0, 60_000)
    s.destroy()
    const answered = takeEvents()
    expect(answered.length).toBeGreaterThan(0)
    expect(answered.every((e) => e.transport === 'tcp' && e.outcome === 'answered')).toBe(true)
    // A server that kept reading would have answered every query before it fell idle.
    expect(answered.length).toBeLessThan(sent / 4)
    await expectStillServing()
  })

  it('bounds concurrent connections', async () => {
    const held: net.Socket[] = []
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      const s = tcpSocket()
      await new Promise((r) => s.once('connect', r))
      held.push(s)
    }
    await waitFor(() => server.openTcpConnections() === MAX_CONNECTIONS)
    // One more is accepted by the kernel and closed by the server without an answer.
    const extra = tcpSocket()
    const replies = readFrames(extra, 1)
    extra.write(frame(query({ id: 6 })))
    expect(await replies).toEqual([])
    expect(server.openTcpConnections()).toBe(MAX_CONNECTIONS)
    for (const s of held) s.destroy()
    await waitFor(() => server.openTcpConnections() === 0)
    expect(takeEvents()).toEqual([])
    await expectStillServing()
  })
})

describe('startDnsServer options', () => {
  it('rejects a non-IPv4 answer address and a config with no listener', async () => {
    const base = { decide: () => ({ allow: true }), answerAddress: ANSWER }
    await expect(
      startDnsServer({ ...base, answerAddress: '::1', udp: { host: '127.0.0.1', port: 0 } }),
    ).rejects.toThrow(/IPv4/)
    await expect(startDnsServer(base)).rejects.toThrow(/udp, tcp or both/)
  })

  it('answers with the configured TTL, and releases the UDP socket when TCP cannot bind', async () => {
    const udpOnly = await startDnsServer({
      decide: () => ({ allow: true }),
      answerAddress: ANSWER,
      udp: { host: '127.0.0.1', port: 0 },
      ttlSeconds: 5,
    })
    expect(udpOnly.tcpAddress).toBeUndefined()
    const port = udpOnly.udpAddress!.port
    const r = parse((await udpExchange(query(), 2000, port))!)
    expect(r.packet.answers?.[0]).toMatchObject({ data: ANSWER, ttl: 5 })
    await udpOnly.close()

    // Reuse the now free UDP port with a TCP port that is taken (the main server's).
    await expect(
      startDnsServer({
        decide: () => ({ allow: true }),
        answerAddress: ANSWER,
        udp: { host: '127.0.0.1', port },
        tcp: { host: '127.0.0.1', port: tcpPort },
      }),
    ).rejects.toThrow(/EADDRINUSE/)
    const probe = dgram.createSocket('udp4')
    ours.add(probe)
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject)
      probe.bind(port, '127.0.0.1', () => resolve())
    })
    probe.close()
  })
})

describe('outbound', () => {
  it('the server never connected anywhere and sent UDP only back to loopback clients', () => {
    expect(foreignConnects).toEqual([])
    expect(foreignSends.length).toBeGreaterThan(0)
    for (const s of foreignSends) expect(s.address).toBe('127.0.0.1')
  })
})
