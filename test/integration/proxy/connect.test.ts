// CONNECT tunnels on the HTTP proxy port: HTTPS with curl, Node (http CONNECT
// + tls.connect) and Python requests; refusals (403, then close); the TLS
// checks on the ClientHello (SNI must match, no SNI, split into 1-byte writes
// and several records); ports; protocols where the server speaks first; IP
// literals in every spelling; plain HTTP inside a tunnel.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import {
  openTunnel,
  parseResponses,
  RawClient,
  slowStart,
  tlsGet,
  tunnelResponses,
  type HttpResult,
} from '../../helpers/clients.js'
import {
  dials,
  freePort,
  loopbackNames,
  startTestProxy,
  type TestProxy,
} from '../../helpers/proxy.js'
import { curl, pythonRequest } from '../../helpers/run.js'
import { BANNER, type EchoBody, startUpstreams, type Upstreams } from '../../helpers/upstreams.js'

let certs: TestCerts
let up: Upstreams
let proxy: TestProxy
let T: number // TLS echo
let H: number // HTTP echo
let S: number // banner server
let P: number // proxy HTTP port
let DEAD: number // a port nothing listens on

beforeAll(async () => {
  certs = await testCerts()
  up = await startUpstreams()
  T = up.tls.port
  H = up.http.port
  S = up.banner.port
  DEAD = await freePort()
  proxy = await startTestProxy({
    allow: [
      `allowed.test:${T}`,
      `*.allowed.test:${T}`,
      `a.test:${T}`,
      `allowed.test:${H}`,
      `127.0.0.1:${H}`,
      `tcp:ssh.test:${S}`,
      `tcp:ssh.test:${DEAD}`,
      // Default ports only (80 and 443): a tunnel must show TLS or HTTP to use it.
      'ssh.test',
    ],
    resolve: loopbackNames(),
    listeners: ['http'],
  })
  P = proxy.port('http')
})

afterAll(async () => {
  await proxy?.close()
  await up?.close()
})

const echoed = (r: { body: string }): EchoBody => JSON.parse(r.body) as EchoBody

/** CONNECT, then TLS with `servername` (none when undefined), one GET. */
async function httpsViaConnect(
  authority: string,
  servername: string | undefined,
  path = '/',
): Promise<HttpResult> {
  const tunnel = await openTunnel(P, authority)
  expect(tunnel.status).toBe(200)
  return tlsGet(tunnel.socket, {
    ca: certs.ca,
    hostHeader: authority,
    path,
    ...(servername !== undefined ? { servername } : {}),
  })
}

/** The client saw the proxy's TLS access_denied alert. */
async function expectTlsRefused(p: Promise<unknown>): Promise<void> {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as NodeJS.ErrnoException | undefined
  expect(err, 'the TLS handshake should have been refused').toBeDefined()
  expect(`${err?.code} ${err?.message}`).toMatch(/ALERT_ACCESS_DENIED|access denied/i)
}

function expectRefusalBody(body: string, host: string, port: number, reason: string): void {
  expect(body).toContain(`host: ${host}\n`)
  expect(body).toContain(`port: ${port}\n`)
  expect(body).toContain('profile: test\n')
  expect(body).toContain('rule: (none)')
  expect(body).toContain(`reason: ${reason}`)
}

describe('HTTPS through CONNECT', () => {
  it('curl: allowed end to end; the event has the SNI, the rule, the address and bytes', async () => {
    const since = proxy.mark()
    const r = await curl([
      '-x',
      `http://127.0.0.1:${P}`,
      '--cacert',
      certs.caFile,
      `https://allowed.test:${T}/curl-tls`,
    ])
    expect(r.code, r.stderr).toBe(0)
    const body = JSON.parse(r.stdout) as EchoBody
    expect(body).toMatchObject({ server: 'tls-echo', url: '/curl-tls', servername: 'allowed.test' })
    const event = await proxy.waitForEvent((e) => e.protocol === 'connect', { since })
    expect(event).toMatchObject({
      protocol: 'connect',
      host: 'allowed.test',
      port: T,
      sni: 'allowed.test',
      action: 'allow',
      rule: `allowed.test:${T}`,
      reason: 'allowed-by-rule',
      address: '127.0.0.1',
      profile: 'test',
    })
    expect(event.method).toBeUndefined()
    expect(event.bytesUp).toBeGreaterThan(200) // at least the ClientHello
    expect(event.bytesDown).toBeGreaterThan(r.stdout.length)
    expect(proxy.logLines().at(-1)).toMatchObject({
      msg: 'allowed',
      protocol: 'connect',
      sni: 'allowed.test',
    })
  })

  it('curl: a refused CONNECT is a 403 from the proxy', async () => {
    const since = proxy.mark()
    const r = await curl([
      '-x',
      `http://127.0.0.1:${P}`,
      '--cacert',
      certs.caFile,
      '-w',
      '%{http_connect}',
      `https://evil.test:${T}/`,
    ])
    expect(r.code).not.toBe(0)
    expect(r.stdout).toBe('403')
    expect(r.stderr).toMatch(/403/)
    const event = await proxy.waitForEvent((e) => e.host === 'evil.test', { since })
    expect(event).toMatchObject({
      protocol: 'connect',
      host: 'evil.test',
      port: T,
      action: 'deny',
      reason: 'not-in-allow-list',
      rule: null,
      bytesUp: 0,
      bytesDown: 0,
    })
    expect(event.address).toBeUndefined()
  })

  // The server closes first here (Connection: close) and Node's TLS client answers with
  // close_notify: the tunnel must still end, and be logged, at once, not at the idle timeout.
  it('Node: CONNECT then tls.connect with the right servername', async () => {
    const res = await httpsViaConnect(`www.allowed.test:${T}`, 'www.allowed.test', '/node-tls')
    expect(res.status).toBe(200)
    expect(echoed(res)).toMatchObject({ url: '/node-tls', servername: 'www.allowed.test' })
    const event = await proxy.waitForEvent((e) => e.host === 'www.allowed.test')
    expect(event).toMatchObject({ sni: 'www.allowed.test', rule: `*.allowed.test:${T}` })
  })

  it('Node: a refused CONNECT gets the 403 with header and body, then the proxy closes', async () => {
    const before = up.tls.connections()
    const tunnel = await openTunnel(P, `evil.test:${T}`)
    expect(tunnel.status).toBe(403)
    expect(tunnel.headers['x-isorun-error']).toBe('blocked-by-policy')
    expectRefusalBody(tunnel.body, 'evil.test', T, 'not-in-allow-list')
    expect(tunnel.socket.destroyed || tunnel.socket.readableEnded).toBe(true)
    expect(up.tls.connections()).toBe(before)
  })

  it('raw: the refusal is exactly one 403 response and the connection ends', async () => {
    const client = await RawClient.connect(P)
    client.write(`CONNECT evil.test:${T} HTTP/1.1\r\nHost: evil.test:${T}\r\n\r\n`)
    await client.waitForClose()
    const [res, ...more] = parseResponses(client.data)
    expect(more).toHaveLength(0)
    expect(res?.status).toBe(403)
    expect(res?.headers['x-isorun-error']).toBe('blocked-by-policy')
    expectRefusalBody(res?.body ?? '', 'evil.test', T, 'not-in-allow-list')
  })

  it('Python requests: https through the proxy, allowed and refused', async () => {
    const proxies = { http: `http://127.0.0.1:${P}`, https: `http://127.0.0.1:${P}` }
    const ok = await pythonRequest({
      url: `https://allowed.test:${T}/py-tls`,
      proxies,
      verify: certs.caFile,
    })
    expect(ok).toMatchObject({ ok: true, status: 200 })
    if (ok.ok) expect(echoed(ok)).toMatchObject({ url: '/py-tls', servername: 'allowed.test' })
    const denied = await pythonRequest({
      url: `https://evil.test:${T}/`,
      proxies,
      verify: certs.caFile,
    })
    expect(denied).toMatchObject({ ok: false, type: 'ProxyError' })
    if (!denied.ok) expect(denied.message).toMatch(/403/)
  })
})

describe('the ClientHello must name the CONNECT target', () => {
  it('SNI mismatch: CONNECT a.test, ClientHello for b.test', async () => {
    const since = proxy.mark()
    await expectTlsRefused(httpsViaConnect(`a.test:${T}`, 'b.test'))
    const event = await proxy.waitForEvent((e) => e.host === 'a.test', { since })
    expect(event).toMatchObject({
      protocol: 'connect',
      host: 'a.test',
      port: T,
      sni: 'b.test',
      action: 'deny',
      reason: 'sni-mismatch',
      detail: 'b.test',
      bytesUp: 0,
    })
    expect(event.address).toBeUndefined()
    expect(proxy.logLines().at(-1)).toMatchObject({ msg: 'blocked', reason: 'sni-mismatch' })
  })

  it('no SNI is refused for a named target', async () => {
    const since = proxy.mark()
    await expectTlsRefused(httpsViaConnect(`a.test:${T}`, undefined))
    const event = await proxy.waitForEvent((e) => e.host === 'a.test', { since })
    expect(event).toMatchObject({ host: 'a.test', action: 'deny', reason: 'no-sni' })
    expect(event.sni).toBeUndefined()
  })

  it('a ClientHello in 1-byte writes with pauses: allowed still works end to end', async () => {
    const since = proxy.mark()
    const tunnel = await openTunnel(P, `allowed.test:${T}`)
    const res = await tlsGet(slowStart(tunnel.socket, { delayMs: 1 }), {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: `allowed.test:${T}`,
      path: '/drip',
    })
    expect(echoed(res)).toMatchObject({ url: '/drip', servername: 'allowed.test' })
    const event = await proxy.waitForEvent((e) => e.host === 'allowed.test' && e.port === T, {
      since,
    })
    expect(event).toMatchObject({ action: 'allow', sni: 'allowed.test' })
  })

  it('a ClientHello split over several TLS records and 1-byte writes still works', async () => {
    const tunnel = await openTunnel(P, `allowed.test:${T}`)
    const res = await tlsGet(slowStart(tunnel.socket, { delayMs: 1, recordSize: 64 }), {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: `allowed.test:${T}`,
      path: '/records',
    })
    expect(echoed(res)).toMatchObject({ url: '/records', servername: 'allowed.test' })
  })

  it('a ClientHello in 1-byte writes naming another host is still refused', async () => {
    const since = proxy.mark()
    const tunnel = await openTunnel(P, `allowed.test:${T}`)
    await expectTlsRefused(
      tlsGet(slowStart(tunnel.socket, { delayMs: 1 }), {
        ca: certs.ca,
        servername: 'evil.test',
        hostHeader: 'evil.test',
      }),
    )
    const event = await proxy.waitForEvent((e) => e.sni === 'evil.test', { since })
    expect(event).toMatchObject({ action: 'deny', reason: 'sni-mismatch', host: 'allowed.test' })
  })
})

describe('a client that starts its first message and stops (slowloris)', () => {
  // A rule naming the port lets the server speak first, so the tunnel waits its whole idle
  // time for the client's first bytes; once they start, the client has handshakeMs to finish.
  let stallProxy: TestProxy
  beforeAll(async () => {
    stallProxy = await startTestProxy({
      allow: [`allowed.test:${T}`],
      resolve: loopbackNames(),
      listeners: ['http'],
      timeouts: { firstBytesMs: 60_000, idleMs: 60_000, handshakeMs: 300 },
    })
  })
  afterAll(() => stallProxy?.close())

  it('a partial ClientHello is refused after handshakeMs, and none of it goes upstream', async () => {
    const since = stallProxy.mark()
    const tunnel = await openTunnel(stallProxy.port('http'), `allowed.test:${T}`)
    expect(tunnel.status).toBe(200)
    const ended = new Promise<void>((resolve) => tunnel.socket.once('end', () => resolve()))
    const received: Buffer[] = []
    tunnel.socket.on('data', (chunk: Buffer) => received.push(chunk))
    // A TLS record header and the start of a ClientHello, then nothing.
    tunnel.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]))
    await ended
    // The proxy's TLS access_denied alert, then its end of the connection.
    expect(Buffer.concat(received)).toEqual(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]))
    tunnel.socket.destroy()
    const event = await stallProxy.waitForEvent((e) => e.host === 'allowed.test', { since })
    expect(event).toMatchObject({ action: 'deny', reason: 'bad-client-hello', bytesUp: 0 })
    expect(event.detail).toMatch(/sent 10 bytes of its first message and not the rest/)
  })
})

describe('ports and protocols', () => {
  it('CONNECT to a port no rule names is refused before any dial', async () => {
    const tries = dials().length
    const tunnel = await openTunnel(P, 'allowed.test:22')
    expect(tunnel.status).toBe(403)
    expectRefusalBody(tunnel.body, 'allowed.test', 22, 'not-in-allow-list')
    expect(
      dials()
        .slice(tries)
        .filter((d) => d.port === 22),
    ).toHaveLength(0)
  })

  it('the server speaks first on a tcp: rule (tcp:ssh.test:PORT)', async () => {
    const since = proxy.mark()
    const client = await RawClient.connect(P)
    client.write(`CONNECT ssh.test:${S} HTTP/1.1\r\nHost: ssh.test:${S}\r\n\r\n`)
    // The banner arrives although the client has sent nothing after CONNECT.
    await client.waitForText(BANNER)
    expect(client.text).toMatch(/^HTTP\/1\.1 200 /)
    client.write('hello')
    await client.waitForText('echo:hello')
    client.destroy()
    const event = await proxy.waitForEvent((e) => e.host === 'ssh.test' && e.port === S, { since })
    expect(event).toMatchObject({
      protocol: 'connect',
      host: 'ssh.test',
      port: S,
      action: 'allow',
      rule: `tcp:ssh.test:${S}`,
      address: '127.0.0.1',
      bytesUp: 5,
    })
    expect(event.bytesDown).toBe(BANNER.length + 'echo:hello'.length)
  })

  it('a tcp: rule whose server is down: closed at once, the error logged', async () => {
    const since = proxy.mark()
    const client = await RawClient.connect(P)
    client.write(`CONNECT ssh.test:${DEAD} HTTP/1.1\r\nHost: ssh.test:${DEAD}\r\n\r\n`)
    // The client waits for a banner; a failed dial must not leave it waiting for the idle timeout.
    await client.waitForClose()
    const event = await proxy.waitForEvent((e) => e.port === DEAD, { since })
    expect(event).toMatchObject({ host: 'ssh.test', action: 'allow', bytesUp: 0, bytesDown: 0 })
    expect(event.error).toMatch(/ECONNREFUSED/)
  })

  it('the same kind of server without a tcp: rule is refused as unreadable, without a dial', async () => {
    // A proxy that waits half a second for the client's first bytes (the default is 15 s).
    const impatient = await startTestProxy({
      allow: ['ssh.test'],
      resolve: loopbackNames(),
      listeners: ['http'],
      timeouts: { firstBytesMs: 500 },
    })
    const since = impatient.mark()
    const tries = dials().length
    const client = await RawClient.connect(impatient.port('http'))
    client.write('CONNECT ssh.test:443 HTTP/1.1\r\nHost: ssh.test:443\r\n\r\n')
    await client.waitForText('200')
    // The client waits for a banner; the proxy waits for a ClientHello, then gives up.
    await client.waitForClose()
    const event = await impatient.waitForEvent((e) => e.host === 'ssh.test' && e.port === 443, {
      since,
    })
    await impatient.close()
    expect(event).toMatchObject({
      protocol: 'connect',
      host: 'ssh.test',
      port: 443,
      action: 'deny',
      reason: 'unreadable-payload',
      detail: 'the client sent nothing: the server would speak first',
    })
    expect(event.address).toBeUndefined()
    expect(
      dials()
        .slice(tries)
        .filter((d) => d.port === 443),
    ).toHaveLength(0)
  })

  it('a client speaking neither TLS nor HTTP without a tcp: rule is refused, on any port', async () => {
    // A rule without a port, and one that names the port without tcp:.
    for (const [host, port] of [
      ['ssh.test', 443],
      ['allowed.test', H],
    ] as const) {
      const since = proxy.mark()
      const tries = dials().length
      const client = await RawClient.connect(P)
      client.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`)
      await client.waitForText('200')
      client.write('SSH-2.0-OpenSSH_9.6\r\n')
      await client.waitForClose()
      const event = await proxy.waitForEvent((e) => e.reason === 'unreadable-payload', { since })
      expect(event).toMatchObject({ action: 'deny', host, port })
      expect(client.text).toContain('unreadable-payload')
      expect(
        dials()
          .slice(tries)
          .filter((d) => d.port === port),
      ).toEqual([])
    }
  })

  it('plain HTTP inside a tunnel is decided with its Host header', async () => {
    const client = await RawClient.connect(P)
    client.write(`CONNECT allowed.test:${H} HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    client.write(`GET /inside HTTP/1.1\r\nHost: allowed.test:${H}\r\nConnection: close\r\n\r\n`)
    await client.waitForClose()
    const { connectStatus, responses } = tunnelResponses(client.data)
    expect(connectStatus).toBe(200)
    expect(responses[0]?.status).toBe(200)
    expect(echoed(responses[0] as HttpResult).url).toBe('/inside')
    const event = await proxy.waitForEvent((e) => e.path === '/inside')
    expect(event).toMatchObject({ protocol: 'connect', method: 'GET', action: 'allow' })

    const other = await RawClient.connect(P)
    other.write(`CONNECT allowed.test:${H} HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await other.waitForText('\r\n\r\n')
    other.write(`GET /smuggle HTTP/1.1\r\nHost: evil.test\r\n\r\n`)
    await other.waitForClose()
    const refused = tunnelResponses(other.data).responses[0]
    expect(refused?.status).toBe(403)
    expect(refused?.headers['x-isorun-error']).toBe('blocked-by-policy')
    const denied = await proxy.waitForEvent((e) => e.path === '/smuggle')
    expect(denied).toMatchObject({ action: 'deny', reason: 'host-mismatch' })
  })

  it('every request of plain HTTP on a kept-alive tunnel is decided on its own', async () => {
    const client = await RawClient.connect(P)
    client.write(`CONNECT allowed.test:${H} HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    // Pipelined: an allowed request, one naming another host, then another allowed one.
    client.write(
      `GET /first HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n` +
        `GET /second HTTP/1.1\r\nHost: evil.test\r\n\r\n` +
        `GET /third HTTP/1.1\r\nHost: allowed.test:${H}\r\nConnection: close\r\n\r\n`,
    )
    await client.waitForClose()
    const { connectStatus, responses } = tunnelResponses(client.data)
    expect(connectStatus).toBe(200)
    expect(responses[0]?.status).toBe(200)
    expect(echoed(responses[0] as HttpResult).url).toBe('/first')
    expect(responses[1]?.status).toBe(403)
    expect(responses[1]?.headers['x-isorun-error']).toBe('blocked-by-policy')
    const second = await proxy.waitForEvent((e) => e.path === '/second')
    expect(second).toMatchObject({ protocol: 'connect', action: 'deny', reason: 'host-mismatch' })
    // The refusal closes the connection (Connection: close), so the third request never runs.
    expect(proxy.events.some((e) => e.path === '/third')).toBe(false)
  })
})

describe('IP literal targets', () => {
  it.each([
    '2130706433',
    '0177.0.0.1',
    '0x7f.1',
    '127.1',
    '0x7f.0.0.1',
    '017700000001',
    '[::ffff:7f00:1]',
    '[::ffff:127.0.0.1]',
  ])('CONNECT %s:PORT is decided as 127.0.0.1', async (spelling) => {
    const path = `/ip-connect/${encodeURIComponent(spelling)}`
    const since = proxy.mark()
    const client = await RawClient.connect(P)
    client.write(`CONNECT ${spelling}:${H} HTTP/1.1\r\nHost: ${spelling}:${H}\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    expect(client.text).toMatch(/^HTTP\/1\.1 200 /)
    client.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${H}\r\nConnection: close\r\n\r\n`)
    await client.waitForClose()
    const { responses } = tunnelResponses(client.data)
    expect(echoed(responses[0] as HttpResult).url).toBe(path)
    const event = await proxy.waitForEvent((e) => e.host === '127.0.0.1' && e.port === H, { since })
    expect(event).toMatchObject({
      host: '127.0.0.1',
      port: H,
      action: 'allow',
      rule: `127.0.0.1:${H}`,
      address: '127.0.0.1',
    })
  })

  it('an IP literal on a port no rule names is refused', async () => {
    const tunnel = await openTunnel(P, `0x7f.1:${T}`)
    expect(tunnel.status).toBe(403)
    expectRefusalBody(tunnel.body, '127.0.0.1', T, 'not-in-allow-list')
  })
})
