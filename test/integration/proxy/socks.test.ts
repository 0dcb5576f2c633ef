// The SOCKS5 port: curl --socks5-hostname and Python requests with socks5h://
// (HTTP and HTTPS), refusals (reply 0x02, curl exit 97), BIND and UDP
// ASSOCIATE (0x07), domain and IPv4 targets, IP literals sent as domains, the
// ClientHello check, and a server that speaks first.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import {
  parseResponses,
  RawClient,
  socksConnect,
  socksHandshake,
  tlsGet,
  type HttpResult,
} from '../../helpers/clients.js'
import { dials, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { curl, CURL_PROXY_ERROR, pythonRequest } from '../../helpers/run.js'
import { BANNER, type EchoBody, startUpstreams, type Upstreams } from '../../helpers/upstreams.js'

let certs: TestCerts
let up: Upstreams
let proxy: TestProxy
let T: number
let H: number
let S: number
let X: number // the proxy's SOCKS port

beforeAll(async () => {
  certs = await testCerts()
  up = await startUpstreams()
  T = up.tls.port
  H = up.http.port
  S = up.banner.port
  proxy = await startTestProxy({
    allow: [
      `allowed.test:${H}`,
      `*.allowed.test:${H}`,
      `allowed.test:${T}`,
      `api.anthropic.com:${T}`,
      `127.0.0.1:${H}`,
      `tcp:ssh.test:${S}`,
    ],
    resolve: loopbackNames({ 'xn--bcher-kva.allowed.test': '127.0.0.1' }),
    listeners: ['socks'],
  })
  X = proxy.port('socks')
})

afterAll(async () => {
  await proxy?.close()
  await up?.close()
})

const echoed = (r: { body: string }): EchoBody => JSON.parse(r.body) as EchoBody

/** Reads until the peer closes; the raw bytes. */
function readAll(socket: import('node:net').Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => undefined)
    socket.on('close', () => resolve(Buffer.concat(chunks)))
    socket.resume()
  })
}

describe('curl --socks5-hostname', () => {
  it('HTTP: allowed end to end; the event names the protocol, host, method and path', async () => {
    const since = proxy.mark()
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${X}`,
      `http://allowed.test:${H}/socks-http`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed({ body: r.stdout })).toMatchObject({ url: '/socks-http' })
    const event = await proxy.waitForEvent((e) => e.path === '/socks-http', { since })
    expect(event).toMatchObject({
      protocol: 'socks',
      host: 'allowed.test',
      port: H,
      method: 'GET',
      action: 'allow',
      rule: `allowed.test:${H}`,
      reason: 'allowed-by-rule',
      address: '127.0.0.1',
    })
    expect(event.bytesUp).toBeGreaterThan(0)
    expect(event.bytesDown).toBeGreaterThan(r.stdout.length)
  })

  it('HTTPS: allowed end to end; the event has the SNI', async () => {
    const since = proxy.mark()
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${X}`,
      '--cacert',
      certs.caFile,
      `https://api.anthropic.com:${T}/v1/messages`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed({ body: r.stdout })).toMatchObject({
      url: '/v1/messages',
      servername: 'api.anthropic.com',
    })
    const event = await proxy.waitForEvent((e) => e.host === 'api.anthropic.com', { since })
    expect(event).toMatchObject({ protocol: 'socks', sni: 'api.anthropic.com', action: 'allow' })
  })

  it('refused: exit 97, a deny event, no dial', async () => {
    const since = proxy.mark()
    const before = up.http.connections()
    const r = await curl(['--socks5-hostname', `127.0.0.1:${X}`, `http://evil.test:${H}/`])
    expect(r.code).toBe(CURL_PROXY_ERROR)
    expect(r.stderr).toMatch(/SOCKS5 connection to evil\.test\. \(2\)/) // reply 0x02
    const event = await proxy.waitForEvent((e) => e.host === 'evil.test', { since })
    expect(event).toMatchObject({
      protocol: 'socks',
      port: H,
      action: 'deny',
      reason: 'not-in-allow-list',
      rule: null,
    })
    expect(event.address).toBeUndefined()
    expect(up.http.connections()).toBe(before)
    expect(proxy.logLines().at(-1)).toMatchObject({ msg: 'blocked', protocol: 'socks' })
  })
})

describe('Python requests with socks5h://', () => {
  const proxies = (): Record<string, string> => ({
    http: `socks5h://127.0.0.1:${X}`,
    https: `socks5h://127.0.0.1:${X}`,
  })

  it('HTTP and HTTPS allowed', async () => {
    const plain = await pythonRequest({
      url: `http://allowed.test:${H}/py-socks`,
      proxies: proxies(),
    })
    expect(plain).toMatchObject({ ok: true, status: 200 })
    if (plain.ok) expect(echoed(plain).url).toBe('/py-socks')
    const secure = await pythonRequest({
      url: `https://allowed.test:${T}/py-socks-tls`,
      proxies: proxies(),
      verify: certs.caFile,
    })
    expect(secure).toMatchObject({ ok: true, status: 200 })
    if (secure.ok)
      expect(echoed(secure)).toMatchObject({ url: '/py-socks-tls', servername: 'allowed.test' })
  })

  it('refused with "not allowed by ruleset" (0x02)', async () => {
    const r = await pythonRequest({ url: `http://evil.test:${H}/`, proxies: proxies() })
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.message).toMatch(/not allowed by ruleset/i)
  })
})

describe('raw SOCKS5', () => {
  it('a refused target gets reply 0x02 and the connection closes', async () => {
    const client = await RawClient.connect(X)
    expect(await socksHandshake(client, 'evil.test', 443)).toBe(0x02)
    await client.waitForClose()
  })

  it.each([
    ['BIND', 0x02],
    ['UDP ASSOCIATE', 0x03],
  ])('%s is refused with 0x07 (command not supported)', async (_name, command) => {
    const tries = dials().length
    const client = await RawClient.connect(X)
    expect(await socksHandshake(client, 'allowed.test', H, { command })).toBe(0x07)
    await client.waitForClose()
    expect(dials().length).toBe(tries + 1) // only the test's own connection to the proxy
  })

  it('an IPv4 address target is decided by IP rules', async () => {
    const since = proxy.mark()
    const { code, socket } = await socksConnect(X, '127.0.0.1', H, { atyp: 'ipv4' })
    expect(code).toBe(0x00)
    socket.write(`GET /socks-ipv4 HTTP/1.1\r\nHost: 127.0.0.1:${H}\r\nConnection: close\r\n\r\n`)
    const [res] = parseResponses(await readAll(socket))
    expect(echoed(res as HttpResult).url).toBe('/socks-ipv4')
    const event = await proxy.waitForEvent((e) => e.path === '/socks-ipv4', { since })
    expect(event).toMatchObject({ host: '127.0.0.1', action: 'allow', rule: `127.0.0.1:${H}` })
  })

  it('an IPv4 address no rule names gets 0x02', async () => {
    const { code } = await socksConnect(X, '127.0.0.1', T, { atyp: 'ipv4' })
    expect(code).toBe(0x02)
  })

  it.each(['2130706433', '0177.0.0.1', '0x7f.1', '127.1', '::ffff:7f00:1', 'ALLOWED.TEST.'])(
    'domain %s is canonicalised before deciding',
    async (spelling) => {
      const since = proxy.mark()
      const path = `/socks-name/${encodeURIComponent(spelling)}`
      const { code, socket } = await socksConnect(X, spelling, H)
      expect(code).toBe(0x00)
      const host = spelling === 'ALLOWED.TEST.' ? 'allowed.test' : '127.0.0.1'
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${H}\r\nConnection: close\r\n\r\n`)
      const [res] = parseResponses(await readAll(socket))
      expect(echoed(res as HttpResult).url).toBe(path)
      const event = await proxy.waitForEvent((e) => e.path === path, { since })
      expect(event).toMatchObject({ protocol: 'socks', host, port: H, action: 'allow' })
    },
  )

  it('an internationalised name is decided in its punycode form', async () => {
    const since = proxy.mark()
    const { code, socket } = await socksConnect(X, 'BÜCHER.allowed.test', H)
    expect(code).toBe(0x00)
    socket.write(
      `GET /idna HTTP/1.1\r\nHost: xn--bcher-kva.allowed.test:${H}\r\nConnection: close\r\n\r\n`,
    )
    const [res] = parseResponses(await readAll(socket))
    expect(echoed(res as HttpResult).url).toBe('/idna')
    const event = await proxy.waitForEvent((e) => e.path === '/idna', { since })
    expect(event).toMatchObject({
      host: 'xn--bcher-kva.allowed.test',
      action: 'allow',
      rule: `*.allowed.test:${H}`,
    })
  })

  it.each(['evilallowed.test', 'allowed.test.evil.test'])(
    'suffix confusion: %s gets 0x02',
    async (name) => {
      const { code } = await socksConnect(X, name, H)
      expect(code).toBe(0x02)
    },
  )

  it('SNI mismatch inside a SOCKS tunnel is refused', async () => {
    const since = proxy.mark()
    const { code, socket } = await socksConnect(X, 'allowed.test', T)
    expect(code).toBe(0x00)
    const err = await tlsGet(socket, {
      ca: certs.ca,
      servername: 'evil.test',
      hostHeader: 'evil.test',
    }).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    )
    expect(`${err?.code} ${err?.message}`).toMatch(/ALERT_ACCESS_DENIED|access denied/i)
    const event = await proxy.waitForEvent((e) => e.sni === 'evil.test', { since })
    expect(event).toMatchObject({ protocol: 'socks', action: 'deny', reason: 'sni-mismatch' })
  })

  it('the server speaks first on an explicitly allowed port', async () => {
    const { code, socket } = await socksConnect(X, 'ssh.test', S)
    expect(code).toBe(0x00)
    const banner = await new Promise<string>((resolve) => {
      socket.once('data', (c: Buffer) => resolve(c.toString()))
      socket.resume()
    })
    expect(banner).toBe(BANNER)
    socket.destroy()
  })
})
