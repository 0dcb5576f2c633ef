// The sandbox attacks every ingress with raw sockets: CONNECT and absolute-form
// on the HTTP proxy port, SOCKS5, transparent HTTP and TLS. The question is
// always the same: did any byte reach an upstream without a decision that
// allowed exactly it? The ground truth is what the recording origins RECEIVED:
// a marker of a request for another host (or of a refused one) must never
// arrive, whatever the client was told.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clientHello, expectNoBlockedDial, marker } from '../../helpers/attacks.js'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import { RawClient, rawTunnel } from '../../helpers/clients.js'
import { dials, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let certs: TestCerts
let origin: RecordingOrigin // plain HTTP on an explicitly allowed port
let tlsOrigin: RecordingOrigin
let proxy: TestProxy
let O: number
let OT: number

/** Writes `data` one byte per write, waiting for each write to be flushed. */
async function writeBytewise(client: RawClient, data: Buffer | string): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data
  for (const byte of bytes) {
    await new Promise<void>((resolve) => client.socket.write(Buffer.from([byte]), () => resolve()))
  }
}

/** The payload of a chunked body at the start of `text` (chunks as the proxy framed them). */
function dechunk(text: string): string {
  let payload = ''
  let rest = text
  for (;;) {
    const m = /^([0-9a-f]+)\r\n/i.exec(rest)
    if (!m) throw new Error(`not a chunk: ${JSON.stringify(rest.slice(0, 40))}`)
    const size = parseInt(m[1] as string, 16)
    if (size === 0) return payload
    payload += rest.slice(m[0].length, m[0].length + size)
    rest = rest.slice(m[0].length + size + 2)
  }
}

beforeAll(async () => {
  certs = await testCerts()
  origin = await startRecordingOrigin()
  tlsOrigin = await startRecordingOrigin({ tls: certs })
  O = origin.port
  OT = tlsOrigin.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`, `allowed.test:${OT}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'plain'],
    extra: { transparentPorts: { tls: OT, plain: O } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([origin?.close(), tlsOrigin?.close()])
})

describe('the HTTP proxy port', () => {
  it('CONNECT to a refused target with a request sent before the answer: 403, nothing arrives', async () => {
    const m = marker('early')
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `CONNECT evil.test:${O} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\nGET ${m} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n`,
    )
    await client.waitForText('403')
    await client.waitForClose()
    expect(origin.text()).not.toContain(m)
  })

  it('a CONNECT after leading empty lines (read by the HTTP server) is decided like any other', async () => {
    const m = marker('crlf-connect')
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `\r\n\r\nCONNECT evil.test:${O} HTTP/1.1\r\nHost: evil.test\r\n\r\nGET ${m} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n`,
    )
    await client.waitForText('403')
    await client.waitForClose()
    expect(origin.text()).not.toContain(m)
  })

  it('an allowed request, then a pipelined CONNECT to a refused target and a request in it', async () => {
    // Node's server hands the socket over at the CONNECT even with a response pending: the
    // refusal ends the connection, and the allowed request may be dropped with it. Never sent
    // is safe; what must not happen is the request behind the CONNECT arriving.
    const ok = marker('allowed-first')
    const m = marker('pipelined-connect')
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `GET http://allowed.test:${O}${ok} HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\n` +
        `CONNECT evil.test:${O} HTTP/1.1\r\nHost: evil.test\r\n\r\n` +
        `GET ${m} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n`,
    )
    await client.waitForText('403')
    await client.waitForClose()
    expect(origin.text()).not.toContain(m)
  })

  it('a refused request, then a pipelined CONNECT to an allowed target carrying a request for another host', async () => {
    const m = marker('after-refusal')
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `GET http://evil.test:${O}/ HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n` +
        `CONNECT allowed.test:${O} HTTP/1.1\r\nHost: allowed.test\r\n\r\n` +
        `GET ${m} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n`,
    )
    await client.waitForText('403')
    await client.waitForClose()
    expect(origin.text()).not.toContain(m)
  })

  it('inside an allowed CONNECT on an explicit port: an allowed request, then one for another host', async () => {
    const ok = marker('tunnel-ok')
    const m = marker('tunnel-evil')
    const client = await rawTunnel('connect', proxy.port('http'), 'allowed.test', O)
    client.write(
      `GET ${ok} HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\nGET ${m} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n`,
    )
    await client.waitForText('403')
    await client.waitForClose()
    await origin.waitFor(() => origin.text().includes(ok))
    expect(origin.text()).not.toContain(m)
  })

  it.each([
    ['an obs-fold line', `CONNECT allowed.test:${0} HTTP/1.1\r\nHost: a\r\n b\r\n\r\n`],
    ['a bare LF', `CONNECT allowed.test:${0} HTTP/1.1\nHost: a\r\n\r\n`],
    ['a bare CR', `CONNECT allowed.test:${0} HTTP/1.1\rHost: a\r\n\r\n`],
    ['a NUL in a header', `CONNECT allowed.test:${0} HTTP/1.1\r\nHost: a\u0000b\r\n\r\n`],
    ['two spaces', `CONNECT  allowed.test:${0} HTTP/1.1\r\n\r\n`],
    ['userinfo', `CONNECT user@allowed.test:${0} HTTP/1.1\r\n\r\n`],
    ['no port', `CONNECT allowed.test HTTP/1.1\r\n\r\n`],
  ])('a CONNECT head with %s, one byte at a time: 400, no dial', async (_name, text) => {
    const head = text.replace(`:${0} `, `:${O} `)
    const before = dials().length
    const connections = origin.connections()
    const client = await RawClient.connect(proxy.port('http'))
    await writeBytewise(client, head).catch(() => undefined)
    await client.waitForText(' 400 ')
    await client.waitForClose()
    expect(dials().slice(before)).toEqual([
      { host: '127.0.0.1', port: proxy.port('http'), blocked: false },
    ])
    expect(origin.connections()).toBe(connections)
  })

  it.each([
    ['Transfer-Encoding and Content-Length', 'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n'],
    ['two Content-Lengths', 'Content-Length: 4\r\nContent-Length: 5\r\n'],
    ['Transfer-Encoding: chunked, identity', 'Transfer-Encoding: chunked, identity\r\n'],
    ['an obs-folded Transfer-Encoding', 'Transfer-Encoding:\r\n chunked\r\n'],
    ['two Host headers', 'Host: evil.test\r\n'],
  ])('absolute form with %s is refused before any byte goes upstream', async (_name, extra) => {
    const m = marker('framing')
    const before = origin.connections()
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `POST http://allowed.test:${O}${m} HTTP/1.1\r\nHost: allowed.test:${O}\r\n${extra}\r\n` +
        `0\r\n\r\nGET http://allowed.test:${O}${m}-smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n`,
    )
    await client.waitForText(' 400 ')
    await client.waitForClose()
    expect(origin.connections()).toBe(before)
    expect(origin.text()).not.toContain(m)
  })

  it('a chunked body with extensions hiding a request: the origin gets one request, re-framed', async () => {
    const m = marker('chunked')
    const hidden = `GET ${m}-hidden HTTP/1.1\r\nHost: evil.test\r\n\r\n`
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `POST http://allowed.test:${O}${m} HTTP/1.1\r\nHost: allowed.test:${O}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        `${hidden.length.toString(16)};ext="a\\"b"\r\n${hidden}\r\n0\r\n\r\n`,
    )
    await client.waitForText(' 200 ')
    await origin.waitFor(() => origin.text().includes(`${m}-hidden`))
    // The hidden request arrived as body bytes only: inside a chunk the proxy framed itself.
    const all = origin.text()
    const text = all.slice(all.indexOf(`POST ${m} `))
    const end = text.indexOf('\r\n\r\n')
    const [head, body] = [text.slice(0, end), text.slice(end + 4)]
    expect(head).toMatch(new RegExp(`^POST ${m} HTTP/1.1\\r\\n`))
    expect(head.toLowerCase()).toContain('transfer-encoding: chunked')
    expect(dechunk(body)).toBe(hidden)
  })
})

describe('transparent HTTP', () => {
  it('an allowed request, then one for another host on the same connection', async () => {
    const ok = marker('transparent-ok')
    const m = marker('transparent-evil')
    const client = await RawClient.connect(proxy.port('plain'))
    client.write(
      `GET ${ok} HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\nGET ${m} HTTP/1.1\r\nHost: evil.test:${O}\r\n\r\n`,
    )
    await client.waitForText('403')
    await client.waitForClose()
    await origin.waitFor(() => origin.text().includes(ok))
    expect(origin.text()).not.toContain(m)
  })

  it.each([
    ['userinfo', 'user@allowed.test'],
    ['percent-encoding', 'allowed%2etest'],
    ['a trailing dot and case', 'ALLOWED.TEST.'],
    ['a path', 'allowed.test/x'],
    ['a comma list', 'allowed.test, evil.test'],
  ])('a Host with %s is read as the origin would, or refused', async (_name, host) => {
    const m = marker('host-form')
    const client = await RawClient.connect(proxy.port('plain'))
    client.write(`GET ${m} HTTP/1.1\r\nHost: ${host}:${O}\r\nConnection: close\r\n\r\n`)
    await client.waitForClose()
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(client.text)?.[1])
    if (status === 200) {
      // Only a form that names the allowed host itself may pass, and arrive as sent.
      expect(host.toLowerCase().replace(/\.$/, '')).toBe('allowed.test')
    } else {
      expect([400, 403]).toContain(status)
      expect(origin.text()).not.toContain(m)
    }
  })
})

describe('SOCKS5', () => {
  function socks(request: Buffer): Promise<RawClient> {
    return RawClient.connect(proxy.port('socks')).then((c) => {
      c.write(Buffer.concat([Buffer.from([5, 1, 0]), request]))
      return c
    })
  }
  const port = (p: number): Buffer => Buffer.from([p >> 8, p & 0xff])

  it.each([
    [
      'ATYP IPv6 ::ffff:127.0.0.1 (no IP rule)',
      () =>
        Buffer.concat([
          Buffer.from([5, 1, 0, 4]),
          Buffer.from('00000000000000000000ffff7f000001', 'hex'),
          port(O),
        ]),
    ],
    [
      'ATYP IPv6 ::1',
      () => Buffer.concat([Buffer.from([5, 1, 0, 4]), Buffer.alloc(15), Buffer.from([1]), port(O)]),
    ],
    [
      'a domain of another host in capitals with a trailing dot',
      () => Buffer.concat([Buffer.from([5, 1, 0, 3, 10]), Buffer.from('EVIL.TEST.'), port(O)]),
    ],
    [
      'a domain with a NUL after the allowed name',
      () =>
        Buffer.concat([
          Buffer.from([5, 1, 0, 3, 17]),
          Buffer.from('allowed.test\u0000evil'),
          port(O),
        ]),
    ],
    [
      'a domain that is an IP in decimal',
      () => Buffer.concat([Buffer.from([5, 1, 0, 3, 10]), Buffer.from('2130706433'), port(O)]),
    ],
    [
      'BIND',
      () => Buffer.concat([Buffer.from([5, 2, 0, 3, 12]), Buffer.from('allowed.test'), port(O)]),
    ],
    ['UDP ASSOCIATE', () => Buffer.concat([Buffer.from([5, 3, 0, 1, 0, 0, 0, 0]), port(0)])],
  ])('%s: refused, nothing dialled', async (_name, request) => {
    const before = dials().length
    const connections = origin.connections()
    const client = await socks(request())
    await client.waitFor((d) => d.length >= 4)
    await client.waitForClose()
    expect(client.data[3]).not.toBe(0x00)
    expect(origin.connections()).toBe(connections)
    expect(
      dials()
        .slice(before)
        .filter((d) => d.port === O),
    ).toEqual([])
  })

  it('a domain length longer than what follows, then a hang-up: nothing dialled', async () => {
    const before = dials().length
    const client = await socks(
      Buffer.concat([Buffer.from([5, 1, 0, 3, 200]), Buffer.from('allowed.test')]),
    )
    client.socket.end()
    await client.waitForClose()
    expect(
      dials()
        .slice(before)
        .filter((d) => d.port === O),
    ).toEqual([])
  })
})

describe('TLS tunnels', () => {
  it('a ClientHello for another host sent with the CONNECT, before the answer: refused, nothing arrives', async () => {
    const hello = await clientHello('evil.test')
    const connections = tlsOrigin.connections()
    const client = await RawClient.connect(proxy.port('http'))
    client.write(Buffer.concat([Buffer.from(`CONNECT allowed.test:${OT} HTTP/1.1\r\n\r\n`), hello]))
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 200 /)
    expect(tlsOrigin.connections()).toBe(connections)
  })

  it.each(['127.0.0.1', 'allowed.test.evil.test', 'evilallowed.test'])(
    'CONNECT allowed.test with the SNI %s: refused, nothing arrives',
    async (sni) => {
      const hello = await clientHello(sni)
      const connections = tlsOrigin.connections()
      const client = await rawTunnel('connect', proxy.port('http'), 'allowed.test', OT)
      client.write(hello)
      await client.waitForClose()
      expect(tlsOrigin.connections()).toBe(connections)
    },
  )

  it('transparent TLS: a ClientHello for another host, byte by byte, then a half-close', async () => {
    const hello = await clientHello('evil.test')
    const before = dials().length
    const connections = tlsOrigin.connections()
    const client = await RawClient.connect(proxy.port('tls'))
    await writeBytewise(client, hello)
    client.socket.end()
    await client.waitForClose()
    expect(tlsOrigin.connections()).toBe(connections)
    expectNoBlockedDial(before)
  })

  it('transparent TLS: two ClientHellos in one write, the first for another host', async () => {
    const evil = await clientHello('evil.test')
    const good = await clientHello('allowed.test')
    const connections = tlsOrigin.connections()
    const client = await RawClient.connect(proxy.port('tls'))
    client.write(Buffer.concat([evil, good]))
    await client.waitForClose()
    expect(tlsOrigin.connections()).toBe(connections)
  })
})
