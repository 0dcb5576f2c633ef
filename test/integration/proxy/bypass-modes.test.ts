// Bypass shapes on every ingress in report mode and with `onUnknown: ask`:
// what refuses in every mode still refuses (special-purpose addresses by IP or
// by resolution, SNI and Host mismatches, unreadable payloads, refused DNS
// types), before any dial to a non-loopback address. With ask, a request no
// rule allows is held, with nothing dialled, until it is answered (the hold
// tests in holds.test.ts go further), and none of these shapes ever becomes
// an approval request.

import { Resolver } from 'node:dns/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testCerts, type TestCerts } from '../../helpers/certs.js'
import { httpViaProxy, openTunnel, RawClient, socksConnect, tlsGet } from '../../helpers/clients.js'
import {
  dials,
  freePort,
  loopbackNames,
  startTestProxy,
  type TestProxy,
} from '../../helpers/proxy.js'
import {
  startHttpEcho,
  startTlsEcho,
  type HttpEcho,
  type Upstream,
} from '../../helpers/upstreams.js'

let certs: TestCerts
let httpEcho: HttpEcho
let tlsEcho: Upstream

beforeAll(async () => {
  certs = await testCerts()
  httpEcho = await startHttpEcho()
  tlsEcho = await startTlsEcho()
})

afterAll(async () => {
  await Promise.all([httpEcho?.close(), tlsEcho?.close()])
})

describe.each(['report', 'ask'] as const)('bypass shapes in %s mode', (mode) => {
  let proxy: TestProxy
  let dnsPort: number
  let H: number
  let T: number

  beforeAll(async () => {
    H = httpEcho.port
    T = tlsEcho.port
    dnsPort = await freePort()
    proxy = await startTestProxy({
      ...(mode === 'report' ? { mode: 'report' as const } : { policy: { onUnknown: 'ask' } }),
      allow: [`allowed.test:${H}`, `allowed.test:${T}`],
      // internal.test resolves to a private address: a name's resolution is checked too.
      resolve: loopbackNames({ 'internal.test': '10.1.2.3' }),
      listeners: ['http', 'socks', 'tls', 'plain', 'dns'],
      ports: { dns: dnsPort },
      extra: { transparentPorts: { tls: T, plain: H }, dnsAnswerAddress: '127.0.0.42' },
    })
  })

  afterAll(async () => {
    await proxy?.close()
  })

  /** No dial left loopback, and no shape here became an approval request. */
  function nothingSlipped(before: number): void {
    expect(
      dials()
        .slice(before)
        .filter((d) => d.blocked),
    ).toEqual([])
    expect(proxy.running.context.approvals.size).toBe(0)
  }

  it('special-purpose addresses: by IP on HTTP, CONNECT and SOCKS, and by resolution', async () => {
    const before = dials().length
    const since = proxy.mark()
    const http = await httpViaProxy(proxy.port('http'), 'http://169.254.169.254/latest/meta-data/')
    expect(http.status).toBe(403)
    const byName = await httpViaProxy(proxy.port('http'), 'http://internal.test/')
    expect(byName.status).toBe(403)
    expect((await openTunnel(proxy.port('http'), '10.0.0.1:443')).status).toBe(403)
    const socks = await socksConnect(proxy.port('socks'), '192.168.1.1', 80, { atyp: 'ipv4' })
    expect(socks.code).toBe(0x02)
    socks.socket.destroy()
    const refusals = await proxy.waitForEvents(4, (e) => e.action === 'deny', { since })
    // internal.test is refused by its resolution in both modes: its address is known without a
    // lookup (the hosts override), so the one decision sees it, and no approval is asked for a
    // name that could never be dialled.
    expect(Object.fromEntries(refusals.map((e) => [e.host, e.reason]))).toEqual({
      '169.254.169.254': 'special-address',
      'internal.test': 'special-address',
      '10.0.0.1': 'special-address',
      '192.168.1.1': 'special-address',
    })
    nothingSlipped(before)
  })

  it('CONNECT with an SNI that is not the target is refused', async () => {
    const before = dials().length
    const since = proxy.mark()
    const tunnel = await openTunnel(proxy.port('http'), `allowed.test:${T}`)
    expect(tunnel.status).toBe(200)
    await expect(
      tlsGet(tunnel.socket, { ca: certs.ca, servername: 'evil.test', hostHeader: 'evil.test' }),
    ).rejects.toThrow()
    const event = await proxy.waitForEvent((e) => e.action === 'deny', { since })
    expect(event.reason).toBe('sni-mismatch')
    nothingSlipped(before)
  })

  it('a Host header that is not the target is refused', async () => {
    const before = dials().length
    const r = await httpViaProxy(proxy.port('http'), `http://allowed.test:${H}/x`, {
      headers: { Host: `evil.test:${H}` },
    })
    expect(r.status).toBe(403)
    expect(r.body).toContain('host-mismatch')
    nothingSlipped(before)
  })

  it('bytes the proxy cannot read, without a tcp: rule, are refused', async () => {
    const before = dials().length
    const since = proxy.mark()
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT allowed.test:${H} HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    client.write(Buffer.from([0x00, 0x01, 0x02, 0xff, 0xfe, 0x0d, 0x0a, 0x0d, 0x0a]))
    const event = await proxy.waitForEvent((e) => e.action === 'deny' && e.protocol === 'connect', {
      since,
    })
    expect(event.reason).toBe('unreadable-payload')
    client.socket.destroy()
    nothingSlipped(before)
  })

  it('transparent TLS naming a host that resolves to a private address is refused', async () => {
    const before = dials().length
    const since = proxy.mark()
    const client = await RawClient.connect(proxy.port('tls'))
    await expect(
      tlsGet(client.socket, {
        ca: certs.ca,
        servername: 'internal.test',
        hostHeader: 'internal.test',
      }),
    ).rejects.toThrow()
    const event = await proxy.waitForEvent((e) => e.protocol === 'tls', { since })
    // The transparent listener resolves before it decides: the address refuses, in both modes,
    // and with ask nothing is asked about a name that resolves to a private address.
    expect(event).toMatchObject({
      action: 'deny',
      host: 'internal.test',
      reason: 'special-address',
    })
    nothingSlipped(before)
  })

  it('DNS: types other than A and AAAA are refused and never asked about', async () => {
    const resolver = new Resolver({ timeout: 3000, tries: 1 })
    resolver.setServers([`127.0.0.1:${dnsPort}`])
    const code = await resolver.resolveTxt('allowed.test').then(
      () => 'ok',
      (err: NodeJS.ErrnoException) => err.code,
    )
    expect(code).toBe('EREFUSED')
    expect(proxy.running.context.approvals.size).toBe(0)
  })

  it(
    mode === 'report'
      ? 'a host the rules do not allow is reached, with a would-deny'
      : 'a host no rule allows is held without a dial, and refused when the answer is deny',
    async () => {
      const before = dials().length
      const asked = httpViaProxy(proxy.port('http'), `http://a.test:${H}/unlisted`)
      if (mode === 'report') {
        expect((await asked).status).toBe(200)
        return
      }
      const approvals = proxy.running.context.approvals
      let after = -1
      let pending = approvals.pending()
      while (!pending.some((p) => p.host === 'a.test' && p.waiting === 1)) {
        const polled = await approvals.poll(after, 10_000)
        after = polled.version
        pending = polled.pending
      }
      expect(dials().slice(before)).toEqual([])
      const id = pending.find((p) => p.host === 'a.test')?.id as string
      approvals.answer(id, { answer: 'deny', by: 'test' })
      const r = await asked
      expect(r.status).toBe(403)
      expect(r.body).toContain('approval-denied')
      expect(dials().slice(before)).toEqual([])
    },
  )
})
