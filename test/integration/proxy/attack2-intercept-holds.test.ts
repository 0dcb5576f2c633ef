// Attack (second round): approvals on intercepted hosts. An approval given for
// a CONNECT to a host with endpoint rules lets the tunnel open, but the
// endpoint rules still decide every request inside it: `once` answers only
// "may this host be reached", never "may any request go". (Found: the requests
// inside an approved intercepted tunnel did not inherit its approval, so each
// one the endpoint rules allow was held and asked about again.)

import http2 from 'node:http2'
import https from 'node:https'
import type net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { testCerts } from '../../helpers/certs.js'
import { interceptedTls } from '../../helpers/intercepted.js'
import { startTestProxy, type TestProxy } from '../../helpers/proxy.js'

let origin: https.Server
let O: number
const received: string[] = []
let proxy: TestProxy
let sandboxCa: CaMaterial

beforeAll(async () => {
  const certs = await testCerts()
  origin = https.createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
    received.push(`${req.method} ${req.url}`)
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  O = (origin.address() as net.AddressInfo).port
  sandboxCa = await createCertificateAuthority({ commonName: 'attack2 intercept holds' })
  proxy = await startTestProxy({
    allow: [],
    endpoints: [
      {
        host: 'a.test',
        from: 'test',
        rules: [
          { methods: [], path: '/private/**', action: 'deny' },
          { methods: ['GET'], path: '/ok/**', action: 'allow' },
        ],
      },
    ],
    policy: { onUnknown: 'ask', approvalTimeoutMs: 20_000 },
    resolve: { 'a.test': '127.0.0.1' },
    listeners: ['http'],
    extra: { interception: { ca: sandboxCa, upstreamCa: certs.ca.toString() } },
  })
})

afterAll(async () => {
  await proxy?.close()
  origin?.closeAllConnections()
  await new Promise((resolve) => origin?.close(resolve))
})

async function pendingFor(host: string): Promise<string> {
  const approvals = proxy.running.context.approvals
  let version = -1
  for (;;) {
    const found = approvals.pending().find((p) => p.host === host)
    if (found) return found.id
    version = (await approvals.poll(version, 10_000)).version
  }
}

function get(session: http2.ClientHttp2Session, method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path })
    stream.on('response', (headers) => resolve(Number(headers[':status'])))
    stream.on('error', reject)
    stream.resume()
    stream.end()
  })
}

describe('approve once a CONNECT to an intercepted host', () => {
  it('the endpoint rules still refuse what they refuse inside the approved tunnel', async () => {
    const opening = interceptedTls({
      via: 'connect',
      proxyPort: proxy.port('http'),
      host: 'a.test',
      port: O,
      ca: sandboxCa.cert,
      alpn: ['h2'],
    })
    const id = await pendingFor('a.test')
    proxy.running.context.approvals.answer(id, { answer: 'once', by: 'test' })
    const secure = await opening
    const session = http2.connect(`https://a.test:${O}`, { createConnection: () => secure })
    session.on('error', () => undefined)
    try {
      const results = await Promise.all([
        get(session, 'GET', '/private/a'),
        get(session, 'POST', '/ok/b'),
        get(session, 'DELETE', '/ok/c'),
      ])
      expect(results).toEqual([403, 403, 403])
      // What the endpoint rules allow goes under the approval, without asking again.
      expect(await get(session, 'GET', '/ok/d')).toBe(200)
      expect(proxy.running.context.approvals.pending()).toEqual([])
      expect(received).toEqual(['GET /ok/d'])
      expect(received).not.toContain('GET /private/a')
      expect(received.filter((r) => !r.startsWith('GET /ok/'))).toEqual([])
    } finally {
      session.destroy()
    }
  })

  it('over HTTP/1.1 too: what the rules allow goes without asking again', async () => {
    const opening = interceptedTls({
      via: 'connect',
      proxyPort: proxy.port('http'),
      host: 'a.test',
      port: O,
      ca: sandboxCa.cert,
      alpn: ['http/1.1'],
    })
    const id = await pendingFor('a.test')
    proxy.running.context.approvals.answer(id, { answer: 'once', by: 'test' })
    const secure = await opening
    const text = await new Promise<string>((resolve) => {
      const chunks: Buffer[] = []
      secure.on('data', (c: Buffer) => chunks.push(c))
      secure.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
      secure.on('error', () => undefined)
      secure.write('GET /ok/h1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    })
    expect(text).toMatch(/^HTTP\/1\.1 200 /)
    expect(received).toContain('GET /ok/h1')
    expect(proxy.running.context.approvals.pending()).toEqual([])
  })
})
