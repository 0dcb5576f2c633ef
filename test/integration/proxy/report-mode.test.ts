// Report mode on every ingress, with real clients: a host the rules would
// refuse is reached anyway, and its event (and log line) carries the would-deny
// with the reason; a host the rules allow carries none; the special-address
// defence still refuses, before any dial. The admin API filters would-deny
// events and counts them in /metrics.

import { Resolver } from 'node:dns/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testCerts, type TestCerts } from '../../helpers/certs.js'
import { httpViaProxy, openTunnel, RawClient, socksConnect, tlsGet } from '../../helpers/clients.js'
import {
  ADMIN_TOKEN,
  dials,
  freePort,
  loopbackNames,
  startTestProxy,
  type TestProxy,
} from '../../helpers/proxy.js'
import { curl } from '../../helpers/run.js'
import {
  startHttpEcho,
  startTlsEcho,
  type HttpEcho,
  type Upstream,
} from '../../helpers/upstreams.js'

let certs: TestCerts
let httpEcho: HttpEcho
let tlsEcho: Upstream
let proxy: TestProxy
let H: number
let T: number
let dnsPort: number
let admin: string

beforeAll(async () => {
  certs = await testCerts()
  httpEcho = await startHttpEcho()
  tlsEcho = await startTlsEcho()
  H = httpEcho.port
  T = tlsEcho.port
  dnsPort = await freePort()
  proxy = await startTestProxy({
    mode: 'report',
    allow: [`allowed.test:${H}`, `allowed.test:${T}`, 'allowed.test'],
    deny: [`evil.test:${H}`],
    // Every name the tests use maps to loopback: nothing is resolved for real.
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'plain', 'dns', 'admin'],
    ports: { dns: dnsPort },
    extra: { transparentPorts: { tls: T, plain: H }, dnsAnswerAddress: '127.0.0.42' },
  })
  admin = `http://127.0.0.1:${proxy.port('admin')}`
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([httpEcho?.close(), tlsEcho?.close()])
})

const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` }

describe('report mode: reached anyway, with the would-deny recorded', () => {
  it('HTTP proxy: an allowed host has no would-deny; a denied one is reached and marked', async () => {
    const since = proxy.mark()
    expect((await httpViaProxy(proxy.port('http'), `http://allowed.test:${H}/ok`)).status).toBe(200)
    const ok = await proxy.waitForEvent((e) => e.host === 'allowed.test', { since })
    expect(ok).toMatchObject({ action: 'allow', rule: `allowed.test:${H}` })
    expect(ok.wouldDeny).toBeUndefined()

    const r = await httpViaProxy(proxy.port('http'), `http://evil.test:${H}/x`)
    expect(r.status).toBe(200)
    const event = await proxy.waitForEvent((e) => e.host === 'evil.test', { since })
    expect(event).toMatchObject({
      protocol: 'http',
      action: 'allow',
      rule: 'mode:report',
      wouldDeny: { reason: 'denied-by-rule', rule: `evil.test:${H}` },
    })
    const line = proxy.logLines().find((l) => l.host === 'evil.test' && l.protocol === 'http')
    expect(line).toMatchObject({
      level: 'warn',
      msg: 'would-deny',
      action: 'allow',
      wouldDeny: { reason: 'denied-by-rule' },
    })
  })

  it('CONNECT: TLS to a host no rule allows gets through, marked not-in-allow-list', async () => {
    const since = proxy.mark()
    const tunnel = await openTunnel(proxy.port('http'), `a.test:${T}`)
    expect(tunnel.status).toBe(200)
    const res = await tlsGet(tunnel.socket, {
      ca: certs.ca,
      servername: 'a.test',
      hostHeader: 'a.test',
    })
    expect(res.status).toBe(200)
    expect(
      await proxy.waitForEvent((e) => e.protocol === 'connect' && e.host === 'a.test', { since }),
    ).toMatchObject({ action: 'allow', wouldDeny: { reason: 'not-in-allow-list', rule: null } })
  })

  it('SOCKS5: the same', async () => {
    const since = proxy.mark()
    const { code, socket } = await socksConnect(proxy.port('socks'), 'a.test', T)
    expect(code).toBe(0)
    socket.resume()
    const res = await tlsGet(socket, { ca: certs.ca, servername: 'a.test', hostHeader: 'a.test' })
    expect(res.status).toBe(200)
    expect(
      await proxy.waitForEvent((e) => e.protocol === 'socks' && e.host === 'a.test', { since }),
    ).toMatchObject({ action: 'allow', wouldDeny: { reason: 'not-in-allow-list' } })
  })

  it('transparent TLS (curl) and transparent HTTP', async () => {
    const since = proxy.mark()
    const r = await curl([
      '--cacert',
      certs.caFile,
      '--connect-to',
      `a.test:${T}:127.0.0.1:${proxy.port('tls')}`,
      `https://a.test:${T}/t`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(
      await proxy.waitForEvent((e) => e.protocol === 'tls' && e.host === 'a.test', { since }),
    ).toMatchObject({ action: 'allow', sni: 'a.test', wouldDeny: { reason: 'not-in-allow-list' } })

    const plain = await RawClient.connect(proxy.port('plain'))
    plain.write('GET /p HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    expect((await plain.waitForText('\r\n\r\n')).toString()).toMatch(/^HTTP\/1\.1 200 /)
    plain.destroy()
    expect(
      await proxy.waitForEvent((e) => e.protocol === 'http' && e.host === 'a.test', { since }),
    ).toMatchObject({ action: 'allow', wouldDeny: { reason: 'not-in-allow-list' } })
  })

  it('DNS: a name the rules refuse is answered, marked', async () => {
    const since = proxy.mark()
    const resolver = new Resolver({ timeout: 3000, tries: 1 })
    resolver.setServers([`127.0.0.1:${dnsPort}`])
    expect(await resolver.resolve4('unlisted.test')).toEqual(['127.0.0.42'])
    expect(
      await proxy.waitForEvent((e) => e.protocol === 'dns' && e.host === 'unlisted.test', {
        since,
      }),
    ).toMatchObject({ action: 'allow', qtype: 'A', wouldDeny: { reason: 'not-in-allow-list' } })
  })

  it('the special-address defence still refuses, without a dial', async () => {
    const before = dials().length
    const r = await httpViaProxy(proxy.port('http'), 'http://169.254.169.254/latest/meta-data/')
    expect(r.status).toBe(403)
    expect(r.body).toContain('special-address')
    const tunnel = await openTunnel(proxy.port('http'), '10.0.0.1:443')
    expect(tunnel.status).toBe(403)
    expect(
      dials()
        .slice(before)
        .filter((d) => !d.host.startsWith('127.')),
    ).toEqual([])
  })
})

describe('report mode in the admin API', () => {
  it('GET /events?action=would-deny lists only would-deny events; blocked adds refusals', async () => {
    const res = await fetch(`${admin}/events?action=would-deny&limit=1000`, { headers: auth })
    const { events } = (await res.json()) as { events: { host: string; wouldDeny?: unknown }[] }
    expect(events.length).toBeGreaterThanOrEqual(6)
    expect(events.every((e) => e.wouldDeny !== undefined)).toBe(true)
    const blocked = (await (
      await fetch(`${admin}/events?action=blocked&limit=1000`, { headers: auth })
    ).json()) as { events: { action: string; wouldDeny?: unknown }[] }
    expect(blocked.events.some((e) => e.action === 'deny')).toBe(true)
    expect(blocked.events.some((e) => e.wouldDeny)).toBe(true)
    const denied = (await (
      await fetch(`${admin}/events?action=deny&limit=1000`, { headers: auth })
    ).json()) as { events: { action: string }[] }
    expect(denied.events.every((e) => e.action === 'deny')).toBe(true)
    expect((await fetch(`${admin}/events?action=nope`, { headers: auth })).status).toBe(400)
  })

  it('/metrics counts would-deny apart', async () => {
    const text = await (await fetch(`${admin}/metrics`, { headers: auth })).text()
    expect(text).toMatch(/^isorun_would_deny_total\{reason="denied-by-rule",protocol="http"\} 1$/m)
    expect(text).toMatch(
      /^isorun_would_deny_total\{reason="not-in-allow-list",protocol="dns"\} 1$/m,
    )
  })
})
