// The HTTP proxy port, absolute-form requests: curl, Node's http and Python
// requests against a local echo server; refusals; names in odd spellings;
// kept-alive and pipelined requests each decided on their own; Host
// mismatches; hop-by-hop headers; no pooled upstream socket shared by two hosts.

import http from 'node:http'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseRule } from '../../../src/policy/index.js'
import { httpViaProxy, parseResponses, RawClient, type HttpResult } from '../../helpers/clients.js'
import { freePort, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { curl, pythonRequest } from '../../helpers/run.js'
import { acceptKey, decodeFrame, encodeText, newKey } from '../../helpers/websocket.js'
import { startHttpEcho, type EchoBody, type HttpEcho } from '../../helpers/upstreams.js'

let echo: HttpEcho
let proxy: TestProxy
let H: number // the echo's port
let P: number // the proxy's HTTP port
let DEAD: number // a port nothing listens on

beforeAll(async () => {
  echo = await startHttpEcho()
  H = echo.port
  DEAD = await freePort()
  proxy = await startTestProxy({
    allow: [`allowed.test:${H}`, `*.allowed.test:${H}`, `127.0.0.1:${H}`, `allowed.test:${DEAD}`],
    deny: ['blocked.allowed.test:*'],
    resolve: loopbackNames(),
    listeners: ['http'],
  })
  P = proxy.port('http')
})

afterAll(async () => {
  await proxy?.close()
  await echo?.close()
})

const echoed = (r: { body: string }): EchoBody => JSON.parse(r.body) as EchoBody

/** curl -i through the proxy; the parsed response. */
async function curlVia(url: string, extra: string[] = []): Promise<HttpResult> {
  const r = await curl(['-i', '-x', `http://127.0.0.1:${P}`, ...extra, url])
  expect(r.code, r.stderr).toBe(0)
  const [res] = parseResponses(Buffer.from(r.stdout, 'latin1'))
  if (!res) throw new Error(`no response in curl output: ${r.stdout}`)
  return res
}

/** Sends raw bytes to the proxy's HTTP port; resolves once `n` responses have arrived. */
async function rawExchange(
  bytes: string,
  n = 1,
): Promise<{ client: RawClient; responses: HttpResult[] }> {
  const client = await RawClient.connect(P)
  client.write(bytes)
  await client.waitFor((d) => parseResponses(d).length >= n)
  return { client, responses: parseResponses(client.data) }
}

function expectRefusal(
  res: HttpResult,
  parts: { host: string; port: number; rule: string; reason: string },
): void {
  expect(res.status).toBe(403)
  expect(res.headers['x-isorun-error']).toBe('blocked-by-policy')
  expect(res.body).toContain(`host: ${parts.host}\n`)
  expect(res.body).toContain(`port: ${parts.port}\n`)
  expect(res.body).toContain('profile: test\n')
  expect(res.body).toContain(`rule: ${parts.rule}`)
  expect(res.body).toContain(`reason: ${parts.reason}`)
}

describe('allowed requests reach the upstream', () => {
  it('curl -x: the echo answers, one allow event and one log line with every field', async () => {
    const since = proxy.mark()
    const res = await curlVia(`http://allowed.test:${H}/hello?x=1`)
    expect(res.status).toBe(200)
    const body = echoed(res)
    expect(body).toMatchObject({ server: 'http-echo', method: 'GET', url: '/hello?x=1' })
    expect(body.headers.host).toBe(`allowed.test:${H}`)

    const event = await proxy.waitForEvent((e) => e.path === '/hello?x=1', { since })
    expect(event).toMatchObject({
      protocol: 'http',
      host: 'allowed.test',
      port: H,
      method: 'GET',
      action: 'allow',
      rule: `allowed.test:${H}`,
      reason: 'allowed-by-rule',
      address: '127.0.0.1',
      profile: 'test',
    })
    expect(event.sni).toBeUndefined()
    expect(event.bytesUp).toBeGreaterThan(0)
    expect(event.bytesDown).toBeGreaterThan(res.body.length)
    const line = proxy.logLines().find((l) => l.path === '/hello?x=1')
    expect(line).toMatchObject({
      level: 'info',
      msg: 'allowed',
      protocol: 'http',
      host: 'allowed.test',
      port: H,
      method: 'GET',
      action: 'allow',
      rule: `allowed.test:${H}`,
      reason: 'allowed-by-rule',
    })
    expect(line?.bytesDown).toBe(event.bytesDown)
  })

  it('Node http: a POST body arrives upstream and counts as bytes up', async () => {
    const payload = 'p'.repeat(5000)
    const res = await httpViaProxy(P, `http://www.allowed.test:${H}/post`, {
      method: 'POST',
      body: payload,
      headers: { 'Content-Type': 'text/plain' },
    })
    expect(res.status).toBe(200)
    expect(echoed(res)).toMatchObject({ method: 'POST', url: '/post', body: payload })
    const event = await proxy.waitForEvent((e) => e.path === '/post')
    expect(event).toMatchObject({
      host: 'www.allowed.test',
      method: 'POST',
      action: 'allow',
      rule: `*.allowed.test:${H}`,
    })
    // The head plus the body: an upload is never logged as nothing.
    expect(event.bytesUp).toBeGreaterThan(payload.length)
    expect(event.bytesUp).toBeLessThan(payload.length + 1000)
  })

  it('Python requests with proxies={"http": …}', async () => {
    const r = await pythonRequest({
      url: `http://allowed.test:${H}/py`,
      proxies: { http: `http://127.0.0.1:${P}`, https: `http://127.0.0.1:${P}` },
    })
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.status).toBe(200)
    expect(echoed(r)).toMatchObject({ url: '/py' })
    await proxy.waitForEvent((e) => e.path === '/py' && e.action === 'allow')
  })
})

describe('an allowed upstream that is down', () => {
  it('is a 502 naming the target, and an allow event with the error', async () => {
    const since = proxy.mark()
    const res = await httpViaProxy(P, `http://allowed.test:${DEAD}/down`)
    expect(res.status).toBe(502)
    expect(res.body).toContain(`allowed.test:${DEAD}`)
    expect(res.headers['x-isorun-error']).toBeUndefined()
    const event = await proxy.waitForEvent((e) => e.path === '/down', { since })
    expect(event).toMatchObject({ action: 'allow', port: DEAD })
    expect(event.error).toMatch(/ECONNREFUSED/)
  })
})

describe('refused requests get the documented 403', () => {
  it('curl: not in the allow list; event and warn line, no dial', async () => {
    const since = proxy.mark()
    const before = echo.connections()
    const res = await curlVia(`http://evil.test:${H}/secret`)
    expectRefusal(res, { host: 'evil.test', port: H, rule: '(none)', reason: 'not-in-allow-list' })
    const event = await proxy.waitForEvent((e) => e.host === 'evil.test', { since })
    expect(event).toMatchObject({
      protocol: 'http',
      port: H,
      method: 'GET',
      path: '/secret',
      action: 'deny',
      rule: null,
      reason: 'not-in-allow-list',
      bytesUp: 0,
      bytesDown: 0,
    })
    expect(event.address).toBeUndefined()
    expect(echo.connections()).toBe(before)
    expect(
      proxy.logLines().find((l) => l.host === 'evil.test' && l.path === '/secret'),
    ).toMatchObject({ level: 'warn', msg: 'blocked', action: 'deny', reason: 'not-in-allow-list' })
  })

  it('a deny rule beats an allow rule and is named in the body', async () => {
    const res = await httpViaProxy(P, `http://blocked.allowed.test:${H}/`)
    expectRefusal(res, {
      host: 'blocked.allowed.test',
      port: H,
      rule: 'blocked.allowed.test:*',
      reason: 'denied-by-rule',
    })
    const event = await proxy.waitForEvent((e) => e.host === 'blocked.allowed.test')
    expect(event).toMatchObject({ action: 'deny', rule: 'blocked.allowed.test:*' })
  })

  it('a port the rules do not name is refused', async () => {
    const res = await httpViaProxy(P, `http://allowed.test:${H + 1}/`)
    expectRefusal(res, {
      host: 'allowed.test',
      port: H + 1,
      rule: '(none)',
      reason: 'not-in-allow-list',
    })
  })

  it('Python requests sees the 403 and the header', async () => {
    const r = await pythonRequest({
      url: `http://evil.test:${H}/py-denied`,
      proxies: { http: `http://127.0.0.1:${P}` },
    })
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.status).toBe(403)
    expect(r.headers['X-Isorun-Error']).toBe('blocked-by-policy')
    expect(r.body).toContain('host: evil.test')
  })
})

describe('names are canonicalised before deciding', () => {
  it('ALLOWED.TEST. (case, trailing dot) is allowed.test', async () => {
    const since = proxy.mark()
    const res = await httpViaProxy(P, `http://ALLOWED.TEST.:${H}/case`)
    expect(res.status).toBe(200)
    expect(echoed(res).url).toBe('/case')
    const event = await proxy.waitForEvent((e) => e.path === '/case', { since })
    expect(event).toMatchObject({ host: 'allowed.test', action: 'allow' })
  })

  it.each(['evilallowed.test', 'allowed.test.evil.test'])(
    'suffix confusion: %s matches neither allowed.test nor *.allowed.test',
    async (host) => {
      const before = echo.connections()
      const res = await httpViaProxy(P, `http://${host}:${H}/`)
      expectRefusal(res, { host, port: H, rule: '(none)', reason: 'not-in-allow-list' })
      expect(echo.connections()).toBe(before)
    },
  )

  it.each([
    '2130706433',
    '0177.0.0.1',
    '0x7f.1',
    '127.1',
    '0x7f000001',
    '[::ffff:7f00:1]',
    '[::ffff:127.0.0.1]',
  ])('IP literal %s is decided as 127.0.0.1', async (spelling) => {
    const since = proxy.mark()
    const path = `/ip/${encodeURIComponent(spelling)}`
    // Raw bytes: a client library could normalise the spelling before the proxy sees it.
    const { client, responses } = await rawExchange(
      `GET http://${spelling}:${H}${path} HTTP/1.1\r\nHost: ${spelling}:${H}\r\nConnection: close\r\n\r\n`,
    )
    client.destroy()
    expect(responses[0]?.status).toBe(200)
    expect(echoed(responses[0] as HttpResult).url).toBe(path)
    const event = await proxy.waitForEvent((e) => e.path === path, { since })
    expect(event).toMatchObject({
      host: '127.0.0.1',
      port: H,
      action: 'allow',
      rule: `127.0.0.1:${H}`,
    })
  })

  it('an IP literal needs a matching rule even with the loopback allowance', async () => {
    const { responses } = await rawExchange(
      `GET http://0x7f.1:${H + 1}/ HTTP/1.1\r\nHost: 0x7f.1:${H + 1}\r\n\r\n`,
    )
    expectRefusal(responses[0] as HttpResult, {
      host: '127.0.0.1',
      port: H + 1,
      rule: '(none)',
      reason: 'not-in-allow-list',
    })
  })
})

describe('the refusal says what to change', () => {
  it.each([
    ['evil.test', `evil.test`],
    ['[::1]', `[::1]`],
  ])('for %s the advice is a rule that parses', async (authority, ruleHost) => {
    const port = H + 1
    const { responses } = await rawExchange(
      `GET http://${authority}:${port}/ HTTP/1.1\r\nHost: ${authority}:${port}\r\n\r\n`,
    )
    const advice = /add "([^"]+)" to the allow list of profile test/.exec(
      responses[0]?.body ?? '',
    )?.[1]
    expect(advice).toBe(`${ruleHost}:${port}`)
    expect(() => parseRule(advice as string)).not.toThrow()
  })
})

describe('each request on a connection is decided on its own', () => {
  it('kept alive: a second host is decided separately, a refused one closes, the first keeps working', async () => {
    const since = proxy.mark()
    const client = await RawClient.connect(P)
    const get = (host: string, path: string): string =>
      `GET http://${host}:${H}${path} HTTP/1.1\r\nHost: ${host}:${H}\r\n\r\n`
    client.write(get('allowed.test', '/ka-1'))
    await client.waitFor((d) => parseResponses(d).length >= 1)
    client.write(get('other.allowed.test', '/ka-2'))
    await client.waitFor((d) => parseResponses(d).length >= 2)
    client.write(get('evil.test', '/ka-3'))
    await client.waitFor((d) => parseResponses(d).length >= 3)
    await client.waitForClose()
    const [r1, r2, r3] = parseResponses(client.data)
    expect(r1?.status).toBe(200)
    expect(echoed(r1 as HttpResult).url).toBe('/ka-1')
    expect(r2?.status).toBe(200)
    expect(echoed(r2 as HttpResult)).toMatchObject({ url: '/ka-2' })
    expect(echoed(r2 as HttpResult).headers.host).toBe(`other.allowed.test:${H}`)
    expectRefusal(r3 as HttpResult, {
      host: 'evil.test',
      port: H,
      rule: '(none)',
      reason: 'not-in-allow-list',
    })
    const events = await proxy.waitForEvents(3, (e) => e.path?.startsWith('/ka-') === true, {
      since,
    })
    expect(events.map((e) => [e.host, e.action]).sort()).toEqual([
      ['allowed.test', 'allow'],
      ['evil.test', 'deny'],
      ['other.allowed.test', 'allow'],
    ])
    // The first host still works, on a new connection.
    const again = await httpViaProxy(P, `http://allowed.test:${H}/ka-4`)
    expect(again.status).toBe(200)
  })

  it('pipelined: two requests written at once are answered in order, each decided', async () => {
    const since = proxy.mark()
    const { client, responses } = await rawExchange(
      `GET http://allowed.test:${H}/pipe-1 HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n` +
        `GET http://other.allowed.test:${H}/pipe-2 HTTP/1.1\r\nHost: other.allowed.test:${H}\r\n\r\n`,
      2,
    )
    client.destroy()
    expect(responses.map((r) => r.status)).toEqual([200, 200])
    expect(responses.map((r) => echoed(r).url)).toEqual(['/pipe-1', '/pipe-2'])
    const events = await proxy.waitForEvents(2, (e) => e.path?.startsWith('/pipe-') === true, {
      since,
    })
    expect(events.map((e) => e.host).sort()).toEqual(['allowed.test', 'other.allowed.test'])
  })

  it('pipelined: an allowed request then a refused one', async () => {
    const { client, responses } = await rawExchange(
      `GET http://allowed.test:${H}/pipe-ok HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n` +
        `GET http://evil.test:${H}/pipe-no HTTP/1.1\r\nHost: evil.test:${H}\r\n\r\n`,
      2,
    )
    client.destroy()
    expect(responses[0]?.status).toBe(200)
    expect(echoed(responses[0] as HttpResult).url).toBe('/pipe-ok')
    expectRefusal(responses[1] as HttpResult, {
      host: 'evil.test',
      port: H,
      rule: '(none)',
      reason: 'not-in-allow-list',
    })
  })

  it('a Host header that disagrees with the absolute URI is refused before any dial', async () => {
    const before = echo.connections()
    const since = proxy.mark()
    const { responses } = await rawExchange(
      `GET http://allowed.test:${H}/mismatch HTTP/1.1\r\nHost: evil.test\r\n\r\n`,
    )
    expectRefusal(responses[0] as HttpResult, {
      host: 'allowed.test',
      port: H,
      rule: '(none)',
      reason: 'host-mismatch',
    })
    const event = await proxy.waitForEvent((e) => e.path === '/mismatch', { since })
    expect(event).toMatchObject({ action: 'deny', reason: 'host-mismatch', detail: 'evil.test' })
    expect(echo.connections()).toBe(before)
  })

  it('an HTTP/1.0 request without Host is decided by its URI, and the upstream gets the name as Host', async () => {
    const { responses } = await rawExchange(`GET http://allowed.test:${H}/no-host HTTP/1.0\r\n\r\n`)
    expect(responses[0]?.status).toBe(200)
    const body = JSON.parse(responses[0]?.body ?? '{}') as EchoBody
    expect(body.url).toBe('/no-host')
    expect(body.headers.host).toBe(`allowed.test:${H}`)
  })

  it('no pooled upstream connection serves two hosts, even at the same address', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      for (const [i, host] of [
        'allowed.test',
        'other.allowed.test',
        'allowed.test',
        'www.allowed.test',
        'other.allowed.test',
        'allowed.test',
      ].entries()) {
        const res = await httpViaProxy(P, `http://${host}:${H}/pool-${i}`, { agent })
        expect(res.status).toBe(200)
        expect(echoed(res).headers.host).toBe(`${host}:${H}`)
      }
    } finally {
      agent.destroy()
    }
    const perSocket = [...echo.hostsBySocket().values()]
    const hostsSeen = new Set(perSocket.flatMap((s) => [...s]))
    expect(hostsSeen).toContain('other.allowed.test')
    expect(hostsSeen).toContain('www.allowed.test')
    for (const hosts of perSocket) expect([...hosts]).toHaveLength(1)
  })
})

describe('headers', () => {
  it('hop-by-hop and Proxy-* request headers are not forwarded; end-to-end ones are', async () => {
    const { client, responses } = await rawExchange(
      [
        `GET http://allowed.test:${H}/headers HTTP/1.1`,
        `Host: allowed.test:${H}`,
        'Connection: keep-alive, X-Drop-Me',
        'X-Drop-Me: 1',
        'Keep-Alive: timeout=5',
        'Proxy-Connection: keep-alive',
        'Proxy-Authorization: Basic c2FuZGJveDpzZWNyZXQ=',
        'Proxy-Custom: for-the-proxy-only',
        'TE: trailers',
        'Trailer: X-Checksum',
        'X-Keep-Me: yes',
        'Authorization: Bearer end-to-end',
        '',
        '',
      ].join('\r\n'),
    )
    client.destroy()
    expect(responses[0]?.status).toBe(200)
    const got = echoed(responses[0] as HttpResult).headers
    expect(got['x-keep-me']).toBe('yes')
    expect(got.authorization).toBe('Bearer end-to-end')
    for (const name of [
      'x-drop-me',
      'keep-alive',
      'proxy-connection',
      'proxy-authorization',
      'proxy-custom',
      'te',
      'trailer',
    ])
      expect(got, name).not.toHaveProperty(name)
    expect(got.connection ?? '').not.toMatch(/x-drop-me/i)
  })

  it("the upstream's hop-by-hop and Proxy-* response headers are not passed back", async () => {
    const res = await httpViaProxy(P, `http://allowed.test:${H}/hop-headers`)
    expect(res.status).toBe(200)
    expect(res.headers['x-upstream-ok']).toBe('passes')
    expect(res.headers).not.toHaveProperty('x-upstream-secret')
    expect(res.headers).not.toHaveProperty('proxy-authenticate')
    expect(res.headers).not.toHaveProperty('proxy-connection')
    expect(res.headers).not.toHaveProperty('proxy-authentication-info')
    expect(res.headers['keep-alive'] ?? '').not.toContain('999')
    expect(res.headers.connection ?? '').not.toMatch(/x-upstream-secret/i)
  })

  it('a request with Expect: 100-continue is stripped too', async () => {
    const client = await RawClient.connect(P)
    client.write(
      `POST http://allowed.test:${H}/expect HTTP/1.1\r\nHost: allowed.test:${H}\r\n` +
        'Expect: 100-continue\r\nProxy-Authorization: Basic c2VjcmV0\r\n' +
        'Connection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 4\r\n\r\n',
    )
    await client.waitForText('100 Continue')
    client.write('body')
    await client.waitForText('"body":"body"')
    client.destroy()
    const res = parseResponses(client.data.subarray(client.data.indexOf('\r\n\r\n') + 4))[0]
    const got = echoed(res as HttpResult).headers
    // The proxy's own server answered 100 Continue, so Expect ends at this hop.
    expect(got).not.toHaveProperty('expect')
    expect(got['content-length']).toBe('4')
    expect(got).not.toHaveProperty('proxy-authorization')
    expect(got).not.toHaveProperty('x-hop')
  })
})

describe('load', () => {
  it('more slow uploads to one host than the upstream pool holds: all succeed, nothing throws', async () => {
    // 64 pooled sockets per host: the rest wait for one while their bodies are already arriving.
    const upload = (i: number): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = http.request({
          host: '127.0.0.1',
          port: P,
          method: 'POST',
          path: `http://allowed.test:${H}/upload-${i}`,
          headers: { Host: `allowed.test:${H}`, 'Proxy-Authorization': 'Basic c2VjcmV0' },
          agent: false,
        })
        req.on('response', (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            const body = JSON.parse(Buffer.concat(chunks).toString()) as EchoBody
            if (body.headers['proxy-authorization'] !== undefined)
              reject(new Error('Proxy-Authorization reached the upstream'))
            else resolve(res.statusCode ?? 0)
          })
        })
        req.on('error', reject)
        req.write('first part ')
        setTimeout(() => req.end('last part'), 300)
      })
    const statuses = await Promise.all(Array.from({ length: 70 }, (_, i) => upload(i)))
    expect(statuses.every((s) => s === 200)).toBe(true)
  })
})

describe('WebSocket upgrade through the HTTP proxy', () => {
  const upgrade = (host: string, key: string): string =>
    `GET http://${host}:${H}/ws HTTP/1.1\r\nHost: ${host}:${H}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    'Proxy-Authorization: Basic c2VjcmV0\r\n\r\n'

  it('allowed: 101 with the right accept key, then frames both ways; logged on close', async () => {
    const since = proxy.mark()
    const key = newKey()
    const client = await RawClient.connect(P)
    client.write(upgrade('allowed.test', key))
    await client.waitForText('\r\n\r\n')
    const head = client.text.slice(0, client.text.indexOf('\r\n\r\n'))
    expect(head).toMatch(/^HTTP\/1\.1 101 /)
    expect(head.toLowerCase()).toContain(`sec-websocket-accept: ${acceptKey(key).toLowerCase()}`)
    expect(head.toLowerCase()).toContain(`x-echo-host: allowed.test:${H}`)
    // The upgrade request went upstream without the proxy's own headers.
    expect(head.toLowerCase()).toContain('x-echo-proxy-authorization: absent')
    const headLength = head.length + 4
    client.write(encodeText('ping through the proxy', true))
    await client.waitFor((d) => decodeFrame(d.subarray(headLength)) !== undefined)
    expect(decodeFrame(client.data.subarray(headLength))?.text).toBe('echo:ping through the proxy')
    client.destroy()
    const event = await proxy.waitForEvent((e) => e.path === '/ws', { since })
    expect(event).toMatchObject({
      protocol: 'http',
      host: 'allowed.test',
      port: H,
      method: 'GET',
      action: 'allow',
      address: '127.0.0.1',
    })
    expect(event.bytesUp).toBeGreaterThan(0)
    expect(event.bytesDown).toBeGreaterThan(0)
  })

  it('refused: the documented 403, no upstream connection', async () => {
    const before = echo.connections()
    const client = await RawClient.connect(P)
    client.write(upgrade('evil.test', newKey()))
    await client.waitForClose()
    expectRefusal(parseResponses(client.data)[0] as HttpResult, {
      host: 'evil.test',
      port: H,
      rule: '(none)',
      reason: 'not-in-allow-list',
    })
    expect(echo.connections()).toBe(before)
  })
})

describe('an upgrade the upstream does not accept', () => {
  it('carries nothing more: requests after the upgrade request never reach the upstream undecided', async () => {
    // A server that ignores Upgrade (and Connection: close) and keeps answering on the connection.
    const seen: string[] = []
    const server = net.createServer((socket) => {
      let buffered = ''
      socket.on('data', (d: Buffer) => {
        buffered += d.toString('latin1')
        for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
          seen.push(buffered.slice(0, buffered.indexOf('\r\n')))
          buffered = buffered.slice(end + 4)
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
        }
      })
      socket.on('error', () => socket.destroy())
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const own = await startTestProxy({ allow: [`allowed.test:${port}`], resolve: loopbackNames() })
    try {
      const client = await RawClient.connect(own.port('http'))
      client.write(
        `GET http://allowed.test:${port}/ok HTTP/1.1\r\nHost: allowed.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n` +
          `POST /admin/secret HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 5\r\n\r\nhello`,
      )
      await client.waitForText('ok')
      await client.waitForClose()
      expect(client.data.toString()).toMatch(/^HTTP\/1\.1 200 OK/)
      expect(seen).toEqual(['GET /ok HTTP/1.1'])
    } finally {
      await own.close()
      server.close()
    }
  })
})
