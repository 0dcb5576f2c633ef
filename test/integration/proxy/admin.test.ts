// The admin API: the bearer token, /healthz, /metrics (Prometheus text whose
// decision counters match what this file did), /events filtering, and
// PUT /policy replacing the policy live (new connections follow it, open ones
// keep going; a bad policy is a 400 and changes nothing). The tests in this
// file run in order and share one proxy, so the counters are exact.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpViaProxy, openTunnel, RawClient } from '../../helpers/clients.js'
import { ADMIN_TOKEN, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import {
  BANNER,
  startBannerServer,
  startHttpEcho,
  type HttpEcho,
  type Upstream,
} from '../../helpers/upstreams.js'
import type { DecisionEvent } from '../../../src/proxy/decision-log.js'

let echo: HttpEcho
let banner: Upstream
let proxy: TestProxy
let H: number
let S: number
let P: number
let admin: string

beforeAll(async () => {
  echo = await startHttpEcho()
  banner = await startBannerServer()
  H = echo.port
  S = banner.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${H}`, `tcp:ssh.test:${S}`],
    resolve: loopbackNames(),
    listeners: ['http', 'admin'],
  })
  P = proxy.port('http')
  admin = `http://127.0.0.1:${proxy.port('admin')}`
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([echo?.close(), banner?.close()])
})

const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` }

function putPolicy(body: unknown, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(`${admin}/policy`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

async function policyName(): Promise<string> {
  const r = await fetch(`${admin}/policy`, { headers: auth })
  return ((await r.json()) as { spec: { name: string } }).spec.name
}

/** `name{labels} value` lines of a Prometheus text body, as a map. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

describe('authentication', () => {
  it('/healthz needs no token', async () => {
    const r = await fetch(`${admin}/healthz`)
    expect(r.status).toBe(200)
    expect(await r.json()).toMatchObject({ ok: true, policy: 'test' })
  })

  it.each([
    ['GET', '/metrics'],
    ['GET', '/events'],
    ['GET', '/policy'],
    ['PUT', '/policy'],
  ])('%s %s without the token is 401', async (method, path) => {
    const attempts: Record<string, string>[] = [
      {},
      { Authorization: 'Bearer wrong' },
      { Authorization: `Basic ${ADMIN_TOKEN}` },
      { Authorization: `Bearer ${ADMIN_TOKEN}x` },
    ]
    for (const headers of attempts) {
      const r = await fetch(`${admin}${path}`, {
        method,
        headers: {
          ...headers,
          ...(method === 'PUT' ? { 'Content-Type': 'application/json' } : {}),
        },
        ...(method === 'PUT' ? { body: JSON.stringify({ spec: { mode: 'allow-all' } }) } : {}),
      })
      expect(r.status).toBe(401)
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('unauthorized')
    }
    expect(await policyName()).toBe('test')
  })

  it('an unknown route is 404 (with the token)', async () => {
    const r = await fetch(`${admin}/nope`, { headers: auth })
    expect(r.status).toBe(404)
  })
})

describe('metrics and events match the traffic', () => {
  it('2 allowed, 3 refused HTTP requests and 1 refused CONNECT are counted exactly', async () => {
    const since = proxy.mark()
    for (const path of ['/m1', '/m2'])
      expect((await httpViaProxy(P, `http://allowed.test:${H}${path}`)).status).toBe(200)
    for (const path of ['/d1', '/d2', '/d3'])
      expect((await httpViaProxy(P, `http://evil.test:${H}${path}`)).status).toBe(403)
    expect((await openTunnel(P, 'evil.test:443')).status).toBe(403)
    await proxy.waitForEvents(6, () => true, { since })

    const r = await fetch(`${admin}/metrics`, { headers: auth })
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await r.text()
    expect(text).toContain('# TYPE isorun_decisions_total counter')
    const m = samples(text)
    expect(
      m.get('isorun_decisions_total{action="allow",reason="allowed-by-rule",protocol="http"}'),
    ).toBe(2)
    expect(
      m.get('isorun_decisions_total{action="deny",reason="not-in-allow-list",protocol="http"}'),
    ).toBe(3)
    expect(
      m.get('isorun_decisions_total{action="deny",reason="not-in-allow-list",protocol="connect"}'),
    ).toBe(1)
    const decisionLines = [...m.keys()].filter((k) => k.startsWith('isorun_decisions_total'))
    expect(decisionLines).toHaveLength(3)
    const allowed = proxy.events.filter((e) => e.action === 'allow')
    expect(m.get('isorun_bytes_total{direction="up"}')).toBe(
      allowed.reduce((n, e) => n + e.bytesUp, 0),
    )
    expect(m.get('isorun_bytes_total{direction="down"}')).toBe(
      allowed.reduce((n, e) => n + e.bytesDown, 0),
    )
    expect(m.get('isorun_bytes_total{direction="down"}')).toBeGreaterThan(0)
    expect(m.get('isorun_policy_info{policy="test"}')).toBe(1)
    expect(m.get('isorun_events_buffered')).toBe(6)
  })

  it('/events?action=deny&limit=2: the two newest refusals, oldest first', async () => {
    const r = await fetch(`${admin}/events?action=deny&limit=2`, { headers: auth })
    expect(r.status).toBe(200)
    const { events } = (await r.json()) as { events: DecisionEvent[] }
    expect(events.map((e) => [e.protocol, e.path ?? null])).toEqual([
      ['http', '/d3'],
      ['connect', null],
    ])
    for (const e of events) expect(e).toMatchObject({ action: 'deny', host: 'evil.test' })
  })

  it('/events?action=allow and no filter', async () => {
    const allow = (await (
      await fetch(`${admin}/events?action=allow`, { headers: auth })
    ).json()) as { events: DecisionEvent[] }
    expect(allow.events.map((e) => e.path)).toEqual(['/m1', '/m2'])
    const all = (await (await fetch(`${admin}/events`, { headers: auth })).json()) as {
      events: DecisionEvent[]
    }
    expect(all.events).toHaveLength(6)
    expect(all.events.map((e) => e.action)).toEqual([
      'allow',
      'allow',
      'deny',
      'deny',
      'deny',
      'deny',
    ])
  })

  it('/events with a bad action is 400', async () => {
    const r = await fetch(`${admin}/events?action=maybe`, { headers: auth })
    expect(r.status).toBe(400)
  })
})

describe('PUT /policy', () => {
  let tunnel: RawClient

  it('replaces the policy: new connections follow it, an open tunnel keeps going', async () => {
    // A tunnel opened under the old policy.
    tunnel = await RawClient.connect(P)
    tunnel.write(`CONNECT ssh.test:${S} HTTP/1.1\r\nHost: ssh.test:${S}\r\n\r\n`)
    await tunnel.waitForText(BANNER)

    const r = await putPolicy({
      spec: { name: 'replaced', mode: 'allow-list', allow: [`other.allowed.test:${H}`] },
    })
    expect(r.status).toBe(200)
    expect(await r.json()).toMatchObject({ policy: 'replaced', mode: 'allow-list', allow: 1 })
    expect(await policyName()).toBe('replaced')
    expect(await (await fetch(`${admin}/healthz`)).json()).toMatchObject({ policy: 'replaced' })

    // allowed.test was allowed, now it is not; other.allowed.test is (loopback still allowed:
    // the operator settings apply to every policy).
    const refused = await httpViaProxy(P, `http://allowed.test:${H}/after`)
    expect(refused.status).toBe(403)
    expect(refused.body).toContain('profile: replaced\n')
    const ok = await httpViaProxy(P, `http://other.allowed.test:${H}/after`)
    expect(ok.status).toBe(200)
    const newTunnel = await openTunnel(P, `ssh.test:${S}`)
    expect(newTunnel.status).toBe(403)

    // The open tunnel still works.
    tunnel.write('still here')
    await tunnel.waitForText('echo:still here')

    const m = samples(await (await fetch(`${admin}/metrics`, { headers: auth })).text())
    expect(m.get('isorun_policy_info{policy="replaced"}')).toBe(1)
  })

  it.each([
    ['an unknown mode', { spec: { name: 'bad', mode: 'bogus' } }],
    ['a public-suffix wildcard', { spec: { name: 'bad', mode: 'allow-list', allow: ['*.com'] } }],
    ['a URL as a rule', { spec: { name: 'bad', mode: 'allow-list', allow: ['http://x.test/'] } }],
    ['allow rules in deny-all', { spec: { name: 'bad', mode: 'deny-all', allow: ['x.test'] } }],
    ['a profile without a catalogue', { profile: 'claude-code' }],
    ['two sources', { profile: 'pypi', spec: { name: 'x', mode: 'allow-all' } }],
    ['nothing', {}],
    ['a list', []],
    ['invalid JSON', '{"spec": '],
  ])('%s: 400, the policy in force stays', async (_name, body) => {
    const r = await putPolicy(body)
    expect(r.status).toBe(400)
    expect(((await r.json()) as { error: { message: string } }).error.message).not.toBe('')
    expect(await policyName()).toBe('replaced')
    expect((await httpViaProxy(P, `http://other.allowed.test:${H}/still`)).status).toBe(200)
    expect((await httpViaProxy(P, `http://allowed.test:${H}/still`)).status).toBe(403)
  })

  it('a body that is not JSON is 415', async () => {
    const r = await putPolicy('mode: allow-all', { ...auth, 'Content-Type': 'text/yaml' })
    expect(r.status).toBe(415)
    expect(await policyName()).toBe('replaced')
  })

  it('the open tunnel is logged under the policy it started with when it ends', async () => {
    const since = proxy.mark()
    tunnel.destroy()
    const event = await proxy.waitForEvent((e) => e.host === 'ssh.test' && e.action === 'allow', {
      since,
    })
    expect(event).toMatchObject({ profile: 'test', rule: `tcp:ssh.test:${S}` })
  })
})
