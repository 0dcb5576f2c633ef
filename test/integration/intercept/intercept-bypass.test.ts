// The bypass classes inside intercepted TLS, on every TLS ingress (CONNECT,
// SOCKS5, transparent TLS): raw bytes written over the TLS the proxy
// terminated, and what the origin received checked. Path and method readings
// (the table the plain-HTTP bypass test uses), fronting by Host or :authority
// (HTTP/1.1 and h2: the connection carries on after a stream-level 403), CONNECT
// and h2c inside the tunnel, an h2 preface after negotiating http/1.1, TLS 1.2
// and 1.3, and a WebSocket echo through the intercepted connection.

import http2 from 'node:http2'
import type tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { testCerts, type TestCerts } from '../../helpers/certs.js'
import {
  interceptedTls,
  rawExchange,
  type InterceptedTlsOptions,
} from '../../helpers/intercepted.js'
import { frame, literal, PREFACE } from '../../helpers/h2-frames.js'
import { PATH_CASES } from '../../helpers/path-cases.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'
import { decodeFrame, encodeText, newKey } from '../../helpers/websocket.js'

let certs: TestCerts
let origin: RecordingOrigin
let proxy: TestProxy
let sandboxCa: CaMaterial
let O: number

beforeAll(async () => {
  certs = await testCerts()
  origin = await startRecordingOrigin({ tls: certs })
  O = origin.port
  sandboxCa = await createCertificateAuthority({ commonName: 'intercept bypass sandbox' })
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`, `a.test:${O}`],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [
          { methods: [], path: '/allowed/private/**', action: 'deny' },
          { methods: ['GET'], path: '/allowed/**', action: 'allow' },
        ],
      },
    ],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls'],
    extra: {
      transparentPorts: { tls: O },
      interception: { ca: sandboxCa, upstreamCa: certs.ca.toString() },
    },
  })
})

afterAll(async () => {
  await proxy?.close()
  await origin?.close()
})

const INGRESSES = ['connect', 'socks', 'transparent'] as const

function options(
  via: (typeof INGRESSES)[number],
  extra: Partial<InterceptedTlsOptions> = {},
): InterceptedTlsOptions {
  const proxyPort = proxy.port(via === 'connect' ? 'http' : via === 'socks' ? 'socks' : 'tls')
  return { via, proxyPort, host: 'allowed.test', port: O, ca: sandboxCa.cert, ...extra }
}

describe.each(INGRESSES)('path readings inside intercepted TLS (%s)', (via) => {
  it.each(PATH_CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const mark = `i${i}-${via}`
    const path = c.path.replace('MARK', mark)
    const text = await rawExchange(
      options(via),
      `GET ${path} HTTP/1.1\r\nHost: allowed.test:${O}\r\n${c.headers ?? ''}Connection: close\r\n\r\n`,
    )
    const arrived = origin.heads().filter((h) => h.target.includes(mark))
    if (c.forwarded === null) {
      expect(text).toMatch(/^HTTP\/1\.1 403 /)
      expect(text).toContain(`reason: ${c.reason}`)
      expect(arrived).toEqual([])
    } else {
      expect(text).toContain('origin ok')
      expect(arrived.map((h) => h.target)).toEqual([c.forwarded.replace('MARK', mark)])
    }
  })
})

describe.each(INGRESSES)('fronting and tunnels inside intercepted TLS (%s)', (via) => {
  it.each([
    ['another host in Host', `GET /allowed/f1 HTTP/1.1\r\nHost: a.test:${0}\r\n\r\n`],
    [
      'an absolute URI naming another host',
      `GET http://a.test/allowed/f2 HTTP/1.1\r\nHost: allowed.test\r\n\r\n`,
    ],
    ['two Host headers', `GET /allowed/f3 HTTP/1.1\r\nHost: allowed.test\r\nHost: a.test\r\n\r\n`],
    ['CONNECT inside the tunnel', `CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n`],
    ['an h2 preface after negotiating http/1.1', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
  ])('refuses %s, and nothing reaches the origin', async (_name, request) => {
    const before = origin.text().length
    const since = proxy.mark()
    const text = await rawExchange(options(via), request.replace(`:${0}`, `:${O}`))
    expect(text).toMatch(/^HTTP\/1\.1 40[03] /)
    expect(origin.text().slice(before)).toBe('')
    void since
  })

  it('serves an h2c upgrade request as plain HTTP/1.1, never switching', async () => {
    const text = await rawExchange(
      options(via),
      `GET /allowed/h2c-${via} HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
    )
    expect(text).not.toMatch(/^HTTP\/1\.1 101/)
    const head = origin.heads().find((h) => h.target === `/allowed/h2c-${via}`)
    expect(head?.headers.has('upgrade')).toBe(false)
  })

  it.each(['TLSv1.2', 'TLSv1.3'] as const)('terminates %s', async (version) => {
    const secure = await interceptedTls(options(via, { maxVersion: version }))
    expect(secure.getProtocol()).toBe(version)
    secure.destroy()
  })
})

/** An h2 session over an intercepted connection. */
async function h2Session(via: (typeof INGRESSES)[number]): Promise<http2.ClientHttp2Session> {
  const secure = await interceptedTls(options(via, { alpn: ['h2'] }))
  expect(secure.alpnProtocol).toBe('h2')
  return http2.connect(`https://allowed.test:${O}`, {
    createConnection: () => secure as tls.TLSSocket,
  })
}

function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<{ status: number; body: string; headers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: true })
    let status = 0
    let got: http2.IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (h) => {
      status = Number(h[':status'])
      got = h
    })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () =>
      resolve({ status, body: Buffer.concat(chunks).toString(), headers: got }),
    )
    stream.on('error', reject)
  })
}

describe.each(INGRESSES)('h2 inside intercepted TLS (%s)', (via) => {
  it('refuses :authority or Host naming another host per stream, and the connection carries on', async () => {
    const session = await h2Session(via)
    try {
      const since = proxy.mark()
      const fronted = await h2Request(session, {
        ':path': `/allowed/h2a-${via}`,
        ':authority': `a.test:${O}`,
      })
      expect(fronted.status).toBe(403)
      expect(fronted.headers['x-isorun-error']).toBe('blocked-by-policy')
      const event = await proxy.waitForEvent((e) => e.reason === 'host-mismatch', { since })
      expect(event.method).toBe('GET')
      const hostHeader = await h2Request(session, {
        ':path': `/allowed/h2b-${via}`,
        ':authority': `allowed.test:${O}`,
        host: 'a.test',
      })
      expect(hostHeader.status).toBe(403)
      const connect = await h2Request(session, { ':method': 'CONNECT', ':authority': `a.test:443` })
      expect(connect.status).toBe(403)
      // The same session still serves an allowed request.
      const ok = await h2Request(session, {
        ':path': `/allowed/h2c-${via}`,
        ':authority': `allowed.test:${O}`,
      })
      expect(ok.status).toBe(200)
      expect(ok.body).toBe('origin ok\n')
      const targets = origin.heads().map((h) => h.target)
      expect(targets).toContain(`/allowed/h2c-${via}`)
      expect(targets.filter((t) => t.includes(`h2a-${via}`) || t.includes(`h2b-${via}`))).toEqual(
        [],
      )
    } finally {
      session.close()
    }
  })

  it('refuses a path reading as a stream-level 403', async () => {
    const session = await h2Session(via)
    try {
      const r = await h2Request(session, {
        ':path': '/allowed/%2e%2e/private/x',
        ':authority': 'allowed.test',
      })
      expect(r.status).toBe(403)
      expect(r.body).toContain('reason: bad-path')
    } finally {
      session.close()
    }
  })
})

describe('hand-made h2 frames inside intercepted TLS', () => {
  it.each([
    [
      'a duplicate :authority',
      [
        [':authority', 'allowed.test'],
        [':authority', 'a.test'],
      ],
    ],
    [
      'an unknown pseudo-header',
      [
        [':authority', 'allowed.test'],
        [':evil', 'a.test'],
      ],
    ],
    [
      'a pseudo-header after a regular header',
      [
        ['x-a', '1'],
        [':authority', 'a.test'],
      ],
    ],
    [
      'an uppercase header name',
      [
        [':authority', 'allowed.test'],
        ['Host', 'a.test'],
      ],
    ],
  ])('%s never reaches the origin', async (name, extra) => {
    const marker = `/allowed/raw-${name.replace(/\W+/g, '-')}`
    const secure = await interceptedTls(options('connect', { alpn: ['h2'] }))
    const headers = Buffer.concat([
      literal(':method', 'GET'),
      literal(':scheme', 'https'),
      literal(':path', marker),
      ...(extra as [string, string][]).map(([n, v]) => literal(n, v)),
    ])
    const received: Buffer[] = []
    secure.on('data', (c: Buffer) => received.push(c))
    const closed = new Promise((resolve) => secure.once('close', resolve))
    secure.on('error', () => undefined)
    // END_STREAM | END_HEADERS; then a well-formed request on stream 3 shows what the
    // connection does afterwards (nghttp2 resets a malformed stream or ends the session).
    secure.write(
      Buffer.concat([
        PREFACE,
        frame(0x4, 0, 0, Buffer.alloc(0)),
        frame(0x1, 0x5, 1, headers),
        frame(
          0x1,
          0x5,
          3,
          Buffer.concat([
            literal(':method', 'GET'),
            literal(':scheme', 'https'),
            literal(':path', `${marker}-after`),
            literal(':authority', 'allowed.test'),
          ]),
        ),
      ]),
    )
    // The well-formed request after it is answered (the origin sees it) unless the proxy
    // ended the whole session; either way the malformed one never arrives.
    await Promise.race([
      origin.waitFor(() => origin.heads().some((h) => h.target === `${marker}-after`)),
      closed,
    ])
    secure.destroy()
    expect(origin.heads().filter((h) => h.target === marker)).toEqual([])
  })
})

describe('TLS oddities on an intercepted connection', () => {
  it('refuses a client whose ALPN list has nothing the proxy speaks', async () => {
    await expect(interceptedTls(options('connect', { alpn: ['spdy/1'] }))).rejects.toThrow()
  })

  it('decides every request after a TLS 1.2 renegotiation as before', async () => {
    // Node lets a client renegotiate a few times (tls.CLIENT_RENEG_LIMIT); the proxy is
    // the TLS server either way, and what travels inside is decided request by request.
    const secure = await interceptedTls(options('connect', { maxVersion: 'TLSv1.2' }))
    secure.on('error', () => undefined)
    await new Promise<void>((resolve, reject) =>
      secure.renegotiate({}, (err) => (err ? reject(err) : resolve())),
    )
    const chunks: Buffer[] = []
    secure.on('data', (c: Buffer) => chunks.push(c))
    const closed = new Promise((resolve) => secure.once('close', resolve))
    secure.write(`GET /allowed/reneg HTTP/1.1\r\nHost: a.test\r\n\r\n`)
    await closed
    expect(Buffer.concat(chunks).toString('latin1')).toMatch(/^HTTP\/1\.1 403 /)
    expect(origin.heads().filter((h) => h.target === '/allowed/reneg')).toEqual([])
  })
})

describe('WebSocket through interception', () => {
  it.each(INGRESSES)('upgrades over HTTP/1.1 and relays frames (%s)', async (via) => {
    const secure = await interceptedTls(options(via))
    const key = newKey()
    let data = Buffer.alloc(0)
    secure.on('data', (c: Buffer) => (data = Buffer.concat([data, c])))
    const waitFor = (pred: () => boolean): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (pred()) {
            secure.off('data', check)
            resolve()
          }
        }
        secure.on('data', check)
        check()
      })
    secure.write(
      `GET /allowed/ws-${via} HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
    )
    await waitFor(() => data.includes('\r\n\r\n'))
    expect(data.toString('latin1')).toMatch(/^HTTP\/1\.1 101 /)
    const marker = `ws-frame-${via}`
    secure.write(encodeText(marker, true))
    // The recording origin keeps what it received after the 101: the frame arrived decrypted.
    await origin.waitFor(() =>
      origin.received().some((b) => {
        const at = b.indexOf(Buffer.from([0x81]))
        return at >= 0 && decodeFrame(b.subarray(at))?.text === marker
      }),
    )
    secure.destroy()
  })
})
