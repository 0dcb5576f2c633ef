// The transparent listeners that DNS steering sends programs to when they
// ignore proxy variables: TLS (the target comes from the SNI) and plain HTTP
// (the target comes from Host, and every request on a kept-alive connection is
// decided on its own). `transparentPorts` makes the proxy decide, and dial, the
// upstreams' real ports instead of 443 and 80.

import { readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import {
  parseResponses,
  RawClient,
  slowStart,
  tlsGet,
  type HttpResult,
} from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { curl } from '../../helpers/run.js'
import { type EchoBody, startUpstreams, type Upstreams } from '../../helpers/upstreams.js'

let certs: TestCerts
let up: Upstreams
let proxy: TestProxy
let T: number
let H: number
let TLS: number // the proxy's transparent TLS port
let PLAIN: number // the proxy's transparent HTTP port

beforeAll(async () => {
  certs = await testCerts()
  up = await startUpstreams()
  T = up.tls.port
  H = up.http.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${T}`, `*.allowed.test:${T}`, `allowed.test:${H}`, `*.allowed.test:${H}`],
    deny: ['blocked.allowed.test:*'],
    resolve: loopbackNames(),
    listeners: ['tls', 'plain'],
    extra: { transparentPorts: { tls: T, plain: H } },
  })
  TLS = proxy.port('tls')
  PLAIN = proxy.port('plain')
})

afterAll(async () => {
  await proxy?.close()
  await up?.close()
})

const echoed = (r: { body: string }): EchoBody => JSON.parse(r.body) as EchoBody

function connectTls(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: TLS })
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

async function expectTlsRefused(p: Promise<unknown>): Promise<void> {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as NodeJS.ErrnoException | undefined
  expect(`${err?.code} ${err?.message}`).toMatch(/ALERT_ACCESS_DENIED|access denied/i)
}

describe('transparent TLS: the SNI names the target', () => {
  it('curl --connect-to: allowed end to end; the event is protocol tls with the SNI', async () => {
    const since = proxy.mark()
    const r = await curl([
      '--cacert',
      certs.caFile,
      '--connect-to',
      `allowed.test:${T}:127.0.0.1:${TLS}`,
      `https://allowed.test:${T}/transparent`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed({ body: r.stdout })).toMatchObject({
      url: '/transparent',
      servername: 'allowed.test',
    })
    const event = await proxy.waitForEvent((e) => e.protocol === 'tls', { since })
    expect(event).toMatchObject({
      protocol: 'tls',
      host: 'allowed.test',
      port: T,
      sni: 'allowed.test',
      action: 'allow',
      rule: `allowed.test:${T}`,
      address: '127.0.0.1',
    })
    expect(event.bytesUp).toBeGreaterThan(0)
    expect(event.bytesDown).toBeGreaterThan(0)
  })

  it('Node tls.connect with a subdomain', async () => {
    const res = await tlsGet(await connectTls(), {
      ca: certs.ca,
      servername: 'www.allowed.test',
      hostHeader: 'www.allowed.test',
      path: '/node',
    })
    expect(echoed(res)).toMatchObject({ url: '/node', servername: 'www.allowed.test' })
  })

  it('a refused SNI gets the access_denied alert and no upstream connection', async () => {
    const since = proxy.mark()
    const before = up.tls.connections()
    await expectTlsRefused(
      tlsGet(await connectTls(), {
        ca: certs.ca,
        servername: 'evil.test',
        hostHeader: 'evil.test',
      }),
    )
    const event = await proxy.waitForEvent((e) => e.host === 'evil.test', { since })
    expect(event).toMatchObject({
      protocol: 'tls',
      port: T,
      sni: 'evil.test',
      action: 'deny',
      reason: 'not-in-allow-list',
    })
    expect(event.address).toBeUndefined()
    expect(up.tls.connections()).toBe(before)
  })

  it('a deny rule wins over the wildcard', async () => {
    await expectTlsRefused(
      tlsGet(await connectTls(), {
        ca: certs.ca,
        servername: 'blocked.allowed.test',
        hostHeader: 'blocked.allowed.test',
      }),
    )
    const event = await proxy.waitForEvent((e) => e.host === 'blocked.allowed.test')
    expect(event).toMatchObject({ action: 'deny', reason: 'denied-by-rule' })
  })

  it('no SNI: no target, refused', async () => {
    const since = proxy.mark()
    const before = up.tls.connections()
    await expectTlsRefused(tlsGet(await connectTls(), { ca: certs.ca, hostHeader: 'allowed.test' }))
    const event = await proxy.waitForEvent((e) => e.protocol === 'tls', { since })
    expect(event).toMatchObject({ host: '', action: 'deny', reason: 'no-sni' })
    expect(up.tls.connections()).toBe(before)
  })

  it('a ClientHello in 1-byte writes: allowed works, refused is refused', async () => {
    const res = await tlsGet(slowStart(await connectTls(), { delayMs: 1 }), {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: 'allowed.test',
      path: '/drip',
    })
    expect(echoed(res).url).toBe('/drip')
    await expectTlsRefused(
      tlsGet(slowStart(await connectTls(), { delayMs: 1, recordSize: 50 }), {
        ca: certs.ca,
        servername: 'evil.test',
        hostHeader: 'evil.test',
      }),
    )
  })

  it('a client that half-closes right after its ClientHello gets the answer, then a close', async () => {
    // Found by the listeners fuzz target: the client's end came before the splice listened.
    const hello = readFileSync(
      join(import.meta.dirname, '../../../fuzz/corpus/client-hello/curl-default'),
    )
    const since = proxy.mark()
    const client = await RawClient.connect(TLS)
    client.write(hello)
    client.socket.end()
    await client.waitForClose()
    expect(client.data[0]).toBe(0x16) // the server's handshake came through
    const event = await proxy.waitForEvent((e) => e.sni === 'allowed.test', { since })
    expect(event).toMatchObject({ action: 'allow', protocol: 'tls' })
  })
})

describe('transparent HTTP: the Host header names the target', () => {
  it('curl --connect-to: allowed end to end', async () => {
    const since = proxy.mark()
    const r = await curl([
      '--connect-to',
      `allowed.test:${H}:127.0.0.1:${PLAIN}`,
      `http://allowed.test:${H}/plain`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(echoed({ body: r.stdout }).url).toBe('/plain')
    const event = await proxy.waitForEvent((e) => e.path === '/plain', { since })
    expect(event).toMatchObject({
      protocol: 'http',
      host: 'allowed.test',
      port: H,
      method: 'GET',
      action: 'allow',
      address: '127.0.0.1',
    })
  })

  it('kept alive: requests to two hosts are each decided; a refused one gets 403 and closes', async () => {
    const since = proxy.mark()
    const client = await RawClient.connect(PLAIN)
    const get = (host: string, path: string): string =>
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`
    client.write(get('allowed.test', '/t-1'))
    await client.waitFor((d) => parseResponses(d).length >= 1)
    client.write(get('www.allowed.test', '/t-2'))
    await client.waitFor((d) => parseResponses(d).length >= 2)
    client.write(get('evil.test', '/t-3'))
    await client.waitFor((d) => parseResponses(d).length >= 3)
    await client.waitForClose()
    const [r1, r2, r3] = parseResponses(client.data) as [HttpResult, HttpResult, HttpResult]
    expect(echoed(r1)).toMatchObject({ url: '/t-1' })
    expect(echoed(r1).headers.host).toBe('allowed.test')
    expect(echoed(r2)).toMatchObject({ url: '/t-2' })
    expect(echoed(r2).headers.host).toBe('www.allowed.test')
    expect(r3.status).toBe(403)
    expect(r3.headers['x-isorun-error']).toBe('blocked-by-policy')
    expect(r3.body).toContain('host: evil.test\n')
    expect(r3.body).toContain(`port: ${H}\n`)
    const events = await proxy.waitForEvents(3, (e) => e.path?.startsWith('/t-') === true, {
      since,
    })
    expect(events.map((e) => `${e.host} ${e.action}`).sort()).toEqual([
      'allowed.test allow',
      'evil.test deny',
      'www.allowed.test allow',
    ])
    // Two hosts, two upstream sockets: none carried both.
    for (const hosts of up.http.hostsBySocket().values()) expect(hosts.size).toBe(1)
  })

  it('a Host naming another port is refused (the target port is fixed)', async () => {
    const client = await RawClient.connect(PLAIN)
    client.write(`GET / HTTP/1.1\r\nHost: allowed.test:${H + 1}\r\n\r\n`)
    await client.waitFor((d) => parseResponses(d).length > 0)
    client.destroy()
    const [res] = parseResponses(client.data)
    expect(res?.status).toBe(403)
    expect(res?.body).toContain('reason: host-mismatch')
  })

  it('no Host header: refused, never forwarded', async () => {
    const before = up.http.connections()
    const client = await RawClient.connect(PLAIN)
    client.write('GET / HTTP/1.0\r\n\r\n')
    await client.waitFor((d) => parseResponses(d).length > 0)
    client.destroy()
    const [res] = parseResponses(client.data)
    expect(res?.status).toBe(403)
    expect(res?.body).toContain('reason: invalid-host')
    expect(up.http.connections()).toBe(before)
  })

  it('CONNECT is not served here', async () => {
    const client = await RawClient.connect(PLAIN)
    client.write(`CONNECT allowed.test:${T} HTTP/1.1\r\nHost: allowed.test:${T}\r\n\r\n`)
    await client.waitForClose()
    expect(parseResponses(client.data)[0]?.status).toBe(400)
  })
})
