// Attack (second round): budgets over intercepted TLS. Every request inside an
// intercepted connection is admitted and charged on its own; h2 multiplexing
// must not let concurrent streams share one check, the 429 is that stream's
// answer (the connection carries on), and the tunnel itself costs no request.

import http2 from 'node:http2'
import https from 'node:https'
import type net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { testCerts } from '../../helpers/certs.js'
import { interceptedTls } from '../../helpers/intercepted.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const LIMIT = 3
const STREAMS = 10

let origin: https.Server
let O: number
const received: string[] = []
let proxy: TestProxy
let sandboxCa: CaMaterial

beforeAll(async () => {
  const certs = await testCerts()
  origin = https.createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
    received.push(req.url ?? '')
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  O = (origin.address() as net.AddressInfo).port
  sandboxCa = await createCertificateAuthority({ commonName: 'attack2 intercept budget' })
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [{ methods: ['GET'], path: '/**', action: 'allow' }],
      },
    ],
    policy: { limits: [{ pattern: `allowed.test:${O}`, requests: LIMIT, from: 'test' }] },
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

function get(session: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path })
    stream.on('response', (headers) => resolve(Number(headers[':status'])))
    stream.on('error', reject)
    stream.resume()
    stream.end()
  })
}

describe('a request budget over intercepted h2', () => {
  it('concurrent streams get LIMIT answers from the origin, the rest a stream-level 429', async () => {
    const secure = await interceptedTls({
      via: 'connect',
      proxyPort: proxy.port('http'),
      host: 'allowed.test',
      port: O,
      ca: sandboxCa.cert,
      alpn: ['h2'],
    })
    const session = http2.connect(`https://allowed.test:${O}`, { createConnection: () => secure })
    session.on('error', () => undefined)
    try {
      const statuses = await Promise.all(
        Array.from({ length: STREAMS }, (_, i) => get(session, `/b${i}`)),
      )
      // The tunnel itself cost no request: all LIMIT went to requests inside it.
      expect([...statuses].sort()).toEqual([
        ...Array<number>(LIMIT).fill(200),
        ...Array<number>(STREAMS - LIMIT).fill(429),
      ])
      expect(received).toHaveLength(LIMIT)
      // A 429 is that stream's answer: the connection carries on.
      expect(session.closed).toBe(false)
      expect(await get(session, '/after')).toBe(429)
      expect(received).toHaveLength(LIMIT)
    } finally {
      session.destroy()
    }
  })
})
