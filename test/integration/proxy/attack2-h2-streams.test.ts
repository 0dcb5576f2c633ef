// Attack (second round): one intercepted HTTP/2 connection opening streams
// without limit. Node's HTTP/2 server allows 2^32-1 concurrent streams unless
// told otherwise, and the one-request-at-a-time bound of HTTP/1.1
// (MAX_WAITING_REQUESTS) is per stream there: 20,000 streams to an origin that
// does not answer made the proxy hold ~170 MB (a sidecar has 256 MB). The
// proxy now advertises SETTINGS_MAX_CONCURRENT_STREAMS; a client that opens
// streams past it has them refused or its session ended, none decided or sent.

import https from 'node:https'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { MAX_CONCURRENT_STREAMS } from '../../../src/proxy/intercept/h2-server.js'
import { testCerts } from '../../helpers/certs.js'
import { frame, FRAME, FrameReader, literal, PREFACE } from '../../helpers/h2-frames.js'
import { interceptedTls } from '../../helpers/intercepted.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
const REFUSED_STREAM = 0x7
const EXTRA = 20

let origin: https.Server
let O: number
/** Requests the origin received (it answers none until the end). */
const received: string[] = []
let proxy: TestProxy
let sandboxCa: CaMaterial

beforeAll(async () => {
  const certs = await testCerts()
  origin = https.createServer({ cert: certs.cert, key: certs.key }, (req) => {
    received.push(req.url ?? '')
  })
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  O = (origin.address() as net.AddressInfo).port
  sandboxCa = await createCertificateAuthority({ commonName: 'attack2 h2 streams' })
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [{ methods: ['GET'], path: '/**', action: 'allow' }],
      },
    ],
    resolve: loopbackNames(),
    listeners: ['http'],
    extra: { interception: { ca: sandboxCa, upstreamCa: certs.ca.toString() } },
  })
})

afterAll(async () => {
  await proxy?.close()
  origin?.closeAllConnections()
  await new Promise((resolve) => origin?.close(resolve))
})

describe('streams on one intercepted h2 connection are bounded', () => {
  it('advertises a stream limit and refuses the streams past it, never sending them', async () => {
    const secure = await interceptedTls({
      via: 'connect',
      proxyPort: proxy.port('http'),
      host: 'allowed.test',
      port: O,
      ca: sandboxCa.cert,
      alpn: ['h2'],
    })
    secure.on('error', () => undefined)
    let closed = false
    secure.once('close', () => {
      closed = true
      for (const check of [...arrived]) check()
    })
    const reader = new FrameReader()
    const arrived = new Set<() => void>()
    secure.on('data', (chunk: Buffer) => {
      reader.push(chunk)
      for (const check of [...arrived]) check()
    })
    const until = (done: () => boolean): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (!done()) return
          arrived.delete(check)
          resolve()
        }
        arrived.add(check)
        check()
      })
    secure.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))]))
    await until(() => reader.frames.some((f) => f.type === FRAME.SETTINGS && f.flags === 0))
    const settings = FrameReader.settings(
      reader.frames.find((f) => f.type === FRAME.SETTINGS && f.flags === 0) as never,
    )
    expect(settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(MAX_CONCURRENT_STREAMS)

    // The limit acknowledged, then more streams than it allows, none ever ended by the client.
    const streams = MAX_CONCURRENT_STREAMS + EXTRA
    const requests = Array.from({ length: streams }, (_, i) =>
      frame(
        FRAME.HEADERS,
        0x5, // END_STREAM | END_HEADERS
        2 * i + 1,
        Buffer.concat([
          literal(':method', 'GET'),
          literal(':scheme', 'https'),
          literal(':path', `/s${i}`),
          literal(':authority', 'allowed.test'),
        ]),
      ),
    )
    secure.write(Buffer.concat([frame(FRAME.SETTINGS, 0x1, 0, Buffer.alloc(0)), ...requests]))
    const refusals = (): number[] =>
      reader.frames
        .filter((f) => f.type === FRAME.RST_STREAM && f.payload.readUInt32BE(0) === REFUSED_STREAM)
        .map((f) => f.stream)
    // nghttp2 refuses each stream past the limit, or (Node) ends the session of a client that
    // opens them regardless: either way, none of them is decided or sent.
    await until(() => refusals().length >= EXTRA || closed)
    const beyond = Array.from({ length: EXTRA }, (_, i) => `/s${MAX_CONCURRENT_STREAMS + i}`)
    expect(received.filter((path) => beyond.includes(path))).toEqual([])
    expect(proxy.events.filter((e) => beyond.includes(e.path ?? ''))).toEqual([])
    secure.destroy()
  })
})
