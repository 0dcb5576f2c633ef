// Hostile input on every listener never takes the proxy down: garbage to the
// HTTP port, broken CONNECT lines and absolute URIs, broken ClientHellos after
// CONNECT, bad SOCKS greetings and requests, random bytes to the transparent
// listeners, bad DNS packets over UDP and TCP. After each one, good requests
// on every listener still work; at the end no client connection is left open.
// (An exception escaping the proxy would also fail this file: vitest reports
// uncaught errors.)

import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import {
  httpViaProxy,
  openTunnel,
  parseResponses,
  RawClient,
  socksConnect,
  tlsGet,
  tunnelResponses,
} from '../../helpers/clients.js'
import {
  dials,
  freePort,
  loopbackNames,
  startTestProxy,
  type TestProxy,
} from '../../helpers/proxy.js'
import { type EchoBody, startUpstreams, type Upstreams } from '../../helpers/upstreams.js'

let certs: TestCerts
let up: Upstreams
let proxy: TestProxy
let T: number
let H: number
let dnsPort: number

const TLS_ALERT_ACCESS_DENIED = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])

beforeAll(async () => {
  certs = await testCerts()
  up = await startUpstreams()
  T = up.tls.port
  H = up.http.port
  dnsPort = await freePort()
  proxy = await startTestProxy({
    allow: ['allowed.test', `allowed.test:${T}`, `allowed.test:${H}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'plain', 'dns'],
    ports: { dns: dnsPort },
    // Short enough that a silent client is cut off within the test.
    timeouts: { firstBytesMs: 1000, handshakeMs: 1000 },
    extra: { transparentPorts: { tls: T, plain: H } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await up?.close()
})

const echoed = (body: string): EchoBody => JSON.parse(body) as EchoBody

/** One good request on every listener. */
async function everythingStillWorks(): Promise<void> {
  const plain = await httpViaProxy(proxy.port('http'), `http://allowed.test:${H}/still-ok`)
  expect(echoed(plain.body).url).toBe('/still-ok')

  const tunnel = await openTunnel(proxy.port('http'), `allowed.test:${T}`)
  expect(tunnel.status).toBe(200)
  const viaConnect = await tlsGet(tunnel.socket, {
    ca: certs.ca,
    servername: 'allowed.test',
    hostHeader: 'allowed.test',
    path: '/still-ok-tls',
  })
  expect(echoed(viaConnect.body).url).toBe('/still-ok-tls')

  const socks = await socksConnect(proxy.port('socks'), 'allowed.test', T)
  expect(socks.code).toBe(0)
  const viaSocks = await tlsGet(socks.socket, {
    ca: certs.ca,
    servername: 'allowed.test',
    hostHeader: 'allowed.test',
    path: '/still-ok-socks',
  })
  expect(echoed(viaSocks.body).url).toBe('/still-ok-socks')

  const transparent = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxy.port('tls') }, () => resolve(s))
    s.once('error', reject)
  })
  const viaTls = await tlsGet(transparent, {
    ca: certs.ca,
    servername: 'allowed.test',
    hostHeader: 'allowed.test',
    path: '/still-ok-transparent',
  })
  expect(echoed(viaTls.body).url).toBe('/still-ok-transparent')

  const plainClient = await RawClient.connect(proxy.port('plain'))
  plainClient.write(
    'GET /still-ok-plain HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n',
  )
  await plainClient.waitForClose()
  expect(echoed(parseResponses(plainClient.data)[0]?.body ?? '').url).toBe('/still-ok-plain')

  const resolver = new Resolver({ timeout: 2000, tries: 1 })
  resolver.setServers([`127.0.0.1:${dnsPort}`])
  expect(await resolver.resolve4('allowed.test')).toEqual(['127.0.0.1'])
}

/** Sends bytes, half-closes, and waits for the proxy to close; what it answered. */
async function sendAndWaitForClose(port: number, bytes: Buffer | string): Promise<Buffer> {
  const client = await RawClient.connect(port)
  client.write(bytes)
  await client.waitForClose()
  client.destroy()
  return client.data
}

describe('HTTP proxy port', () => {
  it.each([
    ['random bytes', randomBytes(4096)],
    ['a NUL-filled request line', Buffer.from('\0\0\0 \0\0\0 HTTP/1.1\r\n\r\n')],
    ['a bare LF request', 'GET http://allowed.test/ HTTP/1.1\nHost: allowed.test\n\n'],
    ['an unknown version', `GET http://allowed.test:${H}/ HTTP/9.9\r\nHost: x\r\n\r\n`],
    [
      'Content-Length with Transfer-Encoding',
      `POST http://allowed.test:${H}/ HTTP/1.1\r\nHost: allowed.test:${H}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'a 64 KiB header',
      `GET http://allowed.test:${H}/ HTTP/1.1\r\nX: ${'a'.repeat(65536)}\r\n\r\n`,
    ],
    [
      'two Host headers',
      `GET http://allowed.test:${H}/ HTTP/1.1\r\nHost: allowed.test:${H}\r\nHost: evil.test\r\n\r\n`,
    ],
  ])('%s: refused with a 4xx or closed', async (_name, bytes) => {
    const before = up.http.connections()
    const answer = await sendAndWaitForClose(proxy.port('http'), bytes)
    if (answer.length > 0) expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.[01] 4\d\d /)
    expect(up.http.connections()).toBe(before)
    await everythingStillWorks()
  })

  it.each([
    'http://allowed.test@evil.test/',
    `https://allowed.test:${'443'}/`,
    '/relative/path',
    'http://allowed.test\\@evil.test/',
    'http://[::1/',
    'ftp://allowed.test/',
    'http://allowed.test:99999/',
  ])('absolute URI %s: 400, nothing forwarded', async (target) => {
    const before = up.http.connections()
    const answer = await sendAndWaitForClose(
      proxy.port('http'),
      `GET ${target} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`,
    )
    expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 (400|403) /)
    expect(up.http.connections()).toBe(before)
  })

  it.each([
    'CONNECT allowed.test HTTP/1.1',
    'CONNECT :443 HTTP/1.1',
    'CONNECT allowed.test:0 HTTP/1.1',
    'CONNECT allowed.test:99999 HTTP/1.1',
    'CONNECT user@allowed.test:443 HTTP/1.1',
    'CONNECT [::1:443 HTTP/1.1',
    'CONNECT allowed.test:443/path HTTP/1.1',
  ])('broken CONNECT line %j: 400 and closed', async (line) => {
    const answer = await sendAndWaitForClose(proxy.port('http'), `${line}\r\nHost: x\r\n\r\n`)
    expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 400 /)
    await everythingStillWorks()
  })

  it('a CONNECT head that never ends is cut off', async () => {
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT allowed.test:${T} HTTP/1.1\r\nHost: allowed.test`)
    client.socket.end()
    await client.waitForClose()
    await everythingStillWorks()
  })

  it.each([
    ['a record header only', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x20, ...randomBytes(32)])],
    ['a zero-length record', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])],
    ['an oversized record', Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01])],
    [
      'a ClientHello header with garbage',
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0xff, 0xff]),
    ],
    ['an SSLv2-style hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, ...randomBytes(40)])],
  ])('after CONNECT, %s: refused, the upstream gets nothing', async (_name, bytes) => {
    const since = proxy.mark()
    const tries = dials().length
    const client = await RawClient.connect(proxy.port('http'))
    // No tcp: rule: no eager dial for a server that speaks first, and bytes that are neither
    // TLS nor HTTP Node's parser can read are refused.
    client.write('CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n')
    await client.waitForText('\r\n\r\n')
    expect(tunnelResponses(client.data).connectStatus).toBe(200)
    client.write(bytes)
    await client.waitForClose()
    const event = await proxy.waitForEvent((e) => e.protocol === 'connect', { since })
    expect(event.action).toBe('deny')
    expect(['bad-client-hello', 'unreadable-payload']).toContain(event.reason)
    if (event.reason === 'bad-client-hello')
      expect(client.data.subarray(client.data.indexOf('\r\n\r\n') + 4)).toEqual(
        TLS_ALERT_ACCESS_DENIED,
      )
    expect(event.bytesUp).toBe(0)
    expect(
      dials()
        .slice(tries)
        .filter((d) => d.port === 443),
    ).toEqual([])
    await everythingStillWorks()
  })

  it('after CONNECT, a truncated ClientHello and a hang-up', async () => {
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT allowed.test:${T} HTTP/1.1\r\nHost: allowed.test:${T}\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    client.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]))
    client.socket.end()
    await client.waitForClose()
    await everythingStillWorks()
  })
})

describe('SOCKS port', () => {
  const greeting = Buffer.from([0x05, 0x01, 0x00])
  it.each([
    ['SOCKS4', Buffer.from([0x04, 0x01, 0x01, 0xbb, 127, 0, 0, 1, 0x00]), undefined],
    ['no methods', Buffer.from([0x05, 0x00]), Buffer.from([0x05, 0xff])],
    ['only user/password offered', Buffer.from([0x05, 0x01, 0x02]), Buffer.from([0x05, 0xff])],
    // Deterministic garbage: random bytes start with 0x05 and a usable greeting now and then.
    [
      'garbage',
      Buffer.from(Array.from({ length: 600 }, (_, i) => (i * 37 + 11) & 0xff)),
      undefined,
    ],
    [
      'an unknown command',
      Buffer.concat([greeting, Buffer.from([0x05, 0x09, 0x00, 0x01, 127, 0, 0, 1, 0, 80])]),
      Buffer.from([0x05, 0x00, 0x05, 0x07]),
    ],
    [
      'an unknown address type',
      Buffer.concat([greeting, Buffer.from([0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80])]),
      Buffer.from([0x05, 0x00, 0x05, 0x08]),
    ],
    [
      'an empty domain',
      Buffer.concat([greeting, Buffer.from([0x05, 0x01, 0x00, 0x03, 0x00, 0, 80])]),
      Buffer.from([0x05, 0x00, 0x05, 0x01]),
    ],
    [
      'a domain with a NUL',
      Buffer.concat([
        greeting,
        Buffer.from([0x05, 0x01, 0x00, 0x03, 13]),
        Buffer.from('allowed.test\0'),
        Buffer.from([0, 80]),
      ]),
      Buffer.from([0x05, 0x00, 0x05, 0x01]),
    ],
    [
      'an invalid host name',
      Buffer.concat([
        greeting,
        Buffer.from([0x05, 0x01, 0x00, 0x03, 9]),
        Buffer.from('a..b/c%00'),
        Buffer.from([0, 80]),
      ]),
      Buffer.from([0x05, 0x00, 0x05, 0x02]),
    ],
  ])('%s: answered as RFC 1928 says, then closed', async (_name, bytes, expected) => {
    const answer = await sendAndWaitForClose(proxy.port('socks'), bytes)
    if (expected) expect(answer.subarray(0, expected.length)).toEqual(expected)
    else expect([0, 2]).toContain(answer.length) // nothing, or 05 FF
    await everythingStillWorks()
  })

  it('a handshake that stops halfway is cut off at the handshake deadline', async () => {
    const client = await RawClient.connect(proxy.port('socks'))
    client.write(Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01]))
    await client.waitForClose()
    await everythingStillWorks()
  })
})

describe('transparent listeners', () => {
  it('random bytes to the TLS listener: decided (no target), closed', async () => {
    const since = proxy.mark()
    const before = up.tls.connections()
    await sendAndWaitForClose(
      proxy.port('tls'),
      Buffer.concat([Buffer.from('x'), randomBytes(2000)]),
    )
    const event = await proxy.waitForEvent((e) => e.protocol === 'tls', { since })
    expect(event.action).toBe('deny')
    expect(up.tls.connections()).toBe(before)
    await everythingStillWorks()
  })

  it('a broken ClientHello to the TLS listener gets the alert', async () => {
    const answer = await sendAndWaitForClose(
      proxy.port('tls'),
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0xff, 0xff]),
    )
    expect(answer).toEqual(TLS_ALERT_ACCESS_DENIED)
    await everythingStillWorks()
  })

  it('plain HTTP to the TLS listener is refused in HTTP', async () => {
    const answer = await sendAndWaitForClose(
      proxy.port('tls'),
      'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n',
    )
    expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 403 /)
  })

  it('a silent client on the TLS listener is cut off', async () => {
    const client = await RawClient.connect(proxy.port('tls'))
    await client.waitForClose()
  })

  it('random bytes to the plain HTTP listener', async () => {
    const answer = await sendAndWaitForClose(proxy.port('plain'), randomBytes(3000))
    if (answer.length > 0) expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 4\d\d /)
    await everythingStillWorks()
  })
})

describe('DNS', () => {
  function udpExchange(packet: Buffer, waitMs = 300): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const socket = dgram.createSocket('udp4')
      const timer = setTimeout(() => {
        socket.close()
        resolve(undefined)
      }, waitMs)
      socket.on('message', (msg) => {
        clearTimeout(timer)
        socket.close()
        resolve(msg)
      })
      socket.send(packet, dnsPort, '127.0.0.1')
    })
  }

  const header = (flags: number, qd: number): Buffer => {
    const b = Buffer.alloc(12)
    b.writeUInt16BE(0x1234, 0)
    b.writeUInt16BE(flags, 2)
    b.writeUInt16BE(qd, 4)
    return b
  }
  const question = Buffer.concat([
    Buffer.from([7, ...Buffer.from('allowed'), 4, ...Buffer.from('test'), 0]),
    Buffer.from([0, 1, 0, 1]),
  ])

  it.each([
    ['a 5-byte datagram', Buffer.from([1, 2, 3, 4, 5]), 'dropped'],
    ['a response (QR set)', Buffer.concat([header(0x8100, 1), question]), 'dropped'],
    // Fixed bytes, not random ones: random bytes now and then form a valid question.
    [
      'garbage after a header',
      Buffer.concat([header(0x0100, 1), Buffer.alloc(100, 0xff)]),
      'FORMERR',
    ],
    ['two questions', Buffer.concat([header(0x0100, 2), question, question]), 'FORMERR'],
    [
      'a compression loop',
      Buffer.concat([header(0x0100, 1), Buffer.from([0xc0, 12, 0, 1, 0, 1])]),
      'FORMERR',
    ],
    [
      'a truncated question',
      Buffer.concat([header(0x0100, 1), question.subarray(0, 6)]),
      'FORMERR',
    ],
    ['an unknown opcode', Buffer.concat([header(0x2100, 1), question]), 'NOTIMP'],
  ])('UDP, %s: %s', async (_name, packet, expected) => {
    const answer = await udpExchange(packet)
    if (expected === 'dropped') expect(answer).toBeUndefined()
    else {
      expect(answer).toBeDefined()
      const rcode = (answer as Buffer).readUInt16BE(2) & 0xf
      expect({ FORMERR: 1, NOTIMP: 4 }[expected]).toBe(rcode)
    }
    await everythingStillWorks()
  })

  it('TCP: an oversized frame and garbage are closed; the server keeps answering', async () => {
    await sendAndWaitForClose(dnsPort, Buffer.concat([Buffer.from([0xff, 0xff]), randomBytes(100)]))
    const client = await RawClient.connect(dnsPort)
    // A query header, then a name whose first byte is a compression pointer past the end.
    client.write(
      Buffer.concat([Buffer.from([0x00, 0x20]), header(0x0100, 1), Buffer.alloc(20, 0xff)]),
    )
    await client.waitFor((d) => d.length >= 14)
    expect(client.data.readUInt16BE(4) & 0xf).toBe(1) // FORMERR
    client.destroy()
    await everythingStillWorks()
  })
})

describe('afterwards', () => {
  it('no client connection is left open', async () => {
    // The limit is only a safety net: connections close as their clients' did.
    const deadline = Date.now() + 20_000
    while (proxy.running.context.tracker.size > 0 && Date.now() < deadline) await sleep(100)
    expect(proxy.running.context.tracker.size).toBe(0)
  })
})
