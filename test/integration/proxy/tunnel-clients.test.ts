// Real clients through tunnels to ports their rules name explicitly (without
// tcp:): what is not TLS inside such a tunnel is served by the proxy's own HTTP
// server and forwarder, and clients must not notice. curl (CONNECT with -p, and
// SOCKS5), Python requests (SOCKS5 and CONNECT) and Node (several requests on
// one kept-alive tunnel), for plain HTTP and HTTPS.

import http from 'node:http'
import type net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import { openTunnel } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { curl, pythonRequest } from '../../helpers/run.js'
import {
  startHttpEcho,
  startTlsEcho,
  type EchoBody,
  type HttpEcho,
  type Upstream,
} from '../../helpers/upstreams.js'

let certs: TestCerts
let httpEcho: HttpEcho
let tlsEcho: Upstream
let proxy: TestProxy
let H: number
let T: number
let P: number // HTTP proxy
let S: number // SOCKS

beforeAll(async () => {
  certs = await testCerts()
  httpEcho = await startHttpEcho()
  tlsEcho = await startTlsEcho()
  H = httpEcho.port
  T = tlsEcho.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${H}`, `allowed.test:${T}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks'],
  })
  P = proxy.port('http')
  S = proxy.port('socks')
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([httpEcho?.close(), tlsEcho?.close()])
})

const echoed = (text: string): EchoBody => JSON.parse(text) as EchoBody

describe('curl', () => {
  it.each([
    ['CONNECT (-p)', ['-p', '-x', `http://127.0.0.1:PROXY`]],
    ['SOCKS5', ['--socks5-hostname', '127.0.0.1:SOCKS']],
  ])('plain HTTP through %s', async (_name, flags) => {
    const args = flags.map((f) => f.replace('PROXY', String(P)).replace('SOCKS', String(S)))
    const r = await curl([...args, `http://allowed.test:${H}/curl-plain?q=1`])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed(r.stdout)).toMatchObject({ url: '/curl-plain?q=1', method: 'GET' })
  })

  it('a POST with a body through SOCKS5', async () => {
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${S}`,
      '--data-binary',
      'hello body',
      `http://allowed.test:${H}/curl-post`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed(r.stdout)).toMatchObject({ method: 'POST', body: 'hello body' })
  })

  it('HTTPS through SOCKS5', async () => {
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${S}`,
      '--cacert',
      certs.caFile,
      `https://allowed.test:${T}/curl-socks-tls`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed(r.stdout)).toMatchObject({ url: '/curl-socks-tls', servername: 'allowed.test' })
  })

  it('--http2 on an http:// URL asks for h2c: answered in HTTP/1.1', async () => {
    for (const flags of [
      ['-p', '-x', `http://127.0.0.1:${P}`],
      ['--socks5-hostname', `127.0.0.1:${S}`],
      ['-x', `http://127.0.0.1:${P}`],
    ]) {
      const r = await curl([
        ...flags,
        '--http2',
        '-w',
        '%{http_version}',
        `http://allowed.test:${H}/h2c`,
      ])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/"url":"\/h2c".*}1\.1$/)
    }
  })

  it('--http2-prior-knowledge is refused (HTTP/2 without TLS is not read)', async () => {
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${S}`,
      '--http2-prior-knowledge',
      `http://allowed.test:${H}/h2-prior`,
    ])
    expect(r.code).not.toBe(0)
  })
})

describe('Python requests', () => {
  it.each([
    ['SOCKS5, plain HTTP', { http: 'socks5h://127.0.0.1:SOCKS' }, 'http', 'H'],
    ['SOCKS5, HTTPS', { https: 'socks5h://127.0.0.1:SOCKS' }, 'https', 'T'],
    ['CONNECT, HTTPS', { https: 'http://127.0.0.1:PROXY' }, 'https', 'T'],
  ] as const)('%s', async (_name, proxies, scheme, which) => {
    const port = which === 'H' ? H : T
    const r = await pythonRequest({
      url: `${scheme}://allowed.test:${port}/py-${scheme}`,
      proxies: Object.fromEntries(
        Object.entries(proxies).map(([k, v]) => [
          k,
          v.replace('SOCKS', String(S)).replace('PROXY', String(P)),
        ]),
      ),
      verify: certs.caFile,
    })
    expect(r).toMatchObject({ ok: true, status: 200 })
    if (r.ok) expect(echoed(r.body).url).toBe(`/py-${scheme}`)
  })
})

describe('Node', () => {
  it('several requests on one kept-alive CONNECT tunnel, each answered', async () => {
    const tunnel = await openTunnel(P, `allowed.test:${H}`)
    expect(tunnel.status).toBe(200)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    // Every request of this agent goes over the one tunnel.
    ;(agent as unknown as { createConnection: () => net.Socket }).createConnection = () =>
      tunnel.socket
    const get = (path: string): Promise<EchoBody> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: 'allowed.test', port: H, path, agent }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (body += c))
          res.on('end', () => resolve(echoed(body)))
        })
        req.on('error', reject)
        req.end()
      })
    const first = await get('/node-1')
    const second = await get('/node-2')
    const third = await get('/node-3')
    expect([first.url, second.url, third.url]).toEqual(['/node-1', '/node-2', '/node-3'])
    agent.destroy()
  })
})
