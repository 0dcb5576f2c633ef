// The hold stage on every ingress (CONNECT, SOCKS, plain HTTP, transparent
// TLS), with `onUnknown: ask`: a connection no rule allows waits for an
// answer with nothing dialled (the stand-in origins count their connections),
// bytes the client sends meanwhile reach the origin only after the answer let
// them through, and only what the decision covers; once lets that connection
// through and the next one asks again; sandbox adds a live rule; deny and
// timeout refuse in the client's protocol; a client that leaves ends its hold
// and costs nothing; deadlines for idle tunnels and first bytes do not cut a
// held connection; 50 concurrent holds are all answered correctly.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PendingApprovalView } from '../../../src/proxy/approvals.js'
import { testCerts, type TestCerts } from '../../helpers/certs.js'
import {
  httpViaProxy,
  RawClient,
  socksConnect,
  socksRequest,
  tlsGet,
} from '../../helpers/clients.js'
import { startDnsStub } from '../../../bench/lib/dns-stub.js'
import { dials, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'
import { pythonRequest } from '../../helpers/run.js'

let certs: TestCerts
let origin: RecordingOrigin
let tlsOrigin: RecordingOrigin
let proxy: TestProxy
let quick: TestProxy

/** Names the tests hold; all are stand-ins on loopback, none is in the allow list. */
const HELD = [
  'connect.allowed.test',
  'pipelined.allowed.test',
  'socks.allowed.test',
  'http.allowed.test',
  'tls.allowed.test',
  'gone.allowed.test',
  'idle.allowed.test',
  'timeout.allowed.test',
  'smuggle.allowed.test',
  'plain.allowed.test',
  'first.allowed.test',
  'second.allowed.test',
  'left.allowed.test',
  'py.allowed.test',
  ...Array.from({ length: 50 }, (_, i) => `n${i}.allowed.test`),
]

beforeAll(async () => {
  certs = await testCerts()
  origin = await startRecordingOrigin()
  tlsOrigin = await startRecordingOrigin({ tls: certs })
  const resolve = Object.fromEntries(HELD.map((n) => [n, '127.0.0.1']))
  proxy = await startTestProxy({
    allow: ['known.test'],
    policy: { onUnknown: 'ask', approvalTimeoutMs: 120_000 },
    resolve,
    listeners: ['http', 'socks', 'tls', 'plain'],
    // Deadlines far shorter than any hold here: a held connection must outlive them.
    timeouts: { firstBytesMs: 300, idleMs: 300, handshakeMs: 300 },
    extra: { transparentPorts: { tls: tlsOrigin.port, plain: origin.port } },
  })
  quick = await startTestProxy({
    policy: { onUnknown: 'ask', approvalTimeoutMs: 200 },
    resolve,
    listeners: ['http', 'socks'],
  })
})

afterAll(async () => {
  await Promise.all([proxy?.close(), quick?.close(), origin?.close(), tlsOrigin?.close()])
})

/** Waits (on the approvals' long poll, not a clock) until `host` has a request waiting. */
async function pendingFor(p: TestProxy, host: string): Promise<PendingApprovalView> {
  const approvals = p.running.context.approvals
  let after = -1
  for (;;) {
    const { version, pending } = await approvals.poll(after, 10_000)
    const hit = pending.find((v) => v.host === host && v.waiting > 0)
    if (hit) return hit
    after = version
  }
}

/** Waits until nothing is held any more. */
async function nothingHeld(p: TestProxy): Promise<void> {
  const approvals = p.running.context.approvals
  let after = -1
  while (approvals.held > 0) after = (await approvals.poll(after, 10_000)).version
}

/** What reached the origin on the connections accepted after the first `before`, as text. */
function sentSince(before: number): string {
  return origin
    .received()
    .slice(before)
    .map((b) => b.toString('latin1'))
    .join('')
}

function answer(id: string, given: 'once' | 'sandbox' | 'deny'): void {
  proxy.running.context.approvals.answer(id, { answer: given, by: 'test:alice' })
}

/** A TLS GET to tls.allowed.test on the transparent listener (the ClientHello names it). */
async function transparentTlsGet(): Promise<{ client: RawClient; got: ReturnType<typeof tlsGet> }> {
  const client = await RawClient.connect(proxy.port('tls'))
  const got = tlsGet(client.socket, {
    servername: 'tls.allowed.test',
    ca: certs.ca,
    hostHeader: 'tls.allowed.test',
  })
  return { client, got }
}

async function connectHeld(host: string, port: number, p = proxy): Promise<RawClient> {
  const client = await RawClient.connect(p.port('http'))
  client.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`)
  return client
}

describe('held connections', () => {
  it('CONNECT: held with no dial; once lets that tunnel through, the next one asks again', async () => {
    const since = proxy.mark()
    const before = origin.connections()
    const client = await connectHeld('connect.allowed.test', origin.port)
    const pending = await pendingFor(proxy, 'connect.allowed.test')
    expect(pending).toMatchObject({ protocol: 'connect', port: origin.port, waiting: 1 })
    expect(origin.connections()).toBe(before)
    expect(client.text).toBe('')
    answer(pending.id, 'once')
    await client.waitForText('\r\n\r\n')
    expect(client.text).toMatch(/^HTTP\/1\.1 200 /)
    client.write(`GET /after HTTP/1.1\r\nHost: connect.allowed.test:${origin.port}\r\n\r\n`)
    await client.waitForText('origin ok')
    client.destroy()
    const event = await proxy.waitForEvent(
      (e) => e.host === 'connect.allowed.test' && e.path === '/after',
      { since },
    )
    expect(event).toMatchObject({
      action: 'allow',
      reason: 'allowed-by-approval',
      approval: { id: pending.id, answer: 'once', by: 'test:alice' },
    })

    const next = await connectHeld('connect.allowed.test', origin.port)
    const again = await pendingFor(proxy, 'connect.allowed.test')
    expect(again.id).not.toBe(pending.id)
    const connections = origin.connections()
    answer(again.id, 'deny')
    await next.waitForClose()
    expect(next.text).toMatch(/^HTTP\/1\.1 403 /)
    expect(next.text).toContain('approval-denied')
    expect(origin.connections()).toBe(connections)
  })

  it('CONNECT: bytes sent while held reach the origin only after the answer, and only what it covers', async () => {
    const before = origin.received().length
    const client = await connectHeld('pipelined.allowed.test', origin.port)
    // A client that does not wait for the 200: one request for the tunnel's host, one for another.
    client.write(
      `GET /while-held HTTP/1.1\r\nHost: pipelined.allowed.test:${origin.port}\r\n\r\n` +
        `GET /smuggled HTTP/1.1\r\nHost: evil.test:${origin.port}\r\n\r\n`,
    )
    const pending = await pendingFor(proxy, 'pipelined.allowed.test')
    expect(origin.received().length).toBe(before)
    answer(pending.id, 'once')
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 200 Connection established/i)
    expect(client.text).toContain('origin ok')
    expect(client.text).toContain('403 Forbidden')
    const sent = sentSince(before)
    expect(sent).toContain('GET /while-held ')
    expect(sent).not.toContain('smuggled')
    expect(sent).not.toContain('evil.test')
  })

  it('SOCKS: held with no dial; sandbox adds a live rule that lets the next one through at once', async () => {
    const before = origin.connections()
    const held = socksConnect(proxy.port('socks'), 'socks.allowed.test', origin.port)
    const pending = await pendingFor(proxy, 'socks.allowed.test')
    expect(pending.protocol).toBe('socks')
    expect(origin.connections()).toBe(before)
    proxy.running.context.approvals.answer(pending.id, { answer: 'sandbox', by: 'test:bob' })
    const { code, socket } = await held
    expect(code).toBe(0x00)
    socket.destroy()
    const since = proxy.mark()
    const again = await socksConnect(proxy.port('socks'), 'socks.allowed.test', origin.port)
    expect(again.code).toBe(0x00)
    const client = await new Promise<string>((resolve) => {
      let text = ''
      again.socket.on('data', (c: Buffer) => {
        text += c.toString('latin1')
        if (text.includes('origin ok')) resolve(text)
      })
      again.socket.resume()
      again.socket.write(`GET /live HTTP/1.1\r\nHost: socks.allowed.test:${origin.port}\r\n\r\n`)
    })
    expect(client).toMatch(/^HTTP\/1\.1 200 /)
    again.socket.destroy()
    expect(proxy.running.context.approvals.pending().map((p) => p.host)).not.toContain(
      'socks.allowed.test',
    )
    const event = await proxy.waitForEvent((e) => e.host === 'socks.allowed.test', { since })
    expect(event).toMatchObject({
      action: 'allow',
      rule: `socks.allowed.test:${origin.port}`,
      approval: undefined,
    })
  })

  it('Python requests over socks5h waits while held, and gets its response once approved', async () => {
    const socks = `socks5h://127.0.0.1:${proxy.port('socks')}`
    const request = pythonRequest({
      url: `https://py.allowed.test:${tlsOrigin.port}/py`,
      proxies: { https: socks },
      verify: certs.caFile,
    })
    answer((await pendingFor(proxy, 'py.allowed.test')).id, 'once')
    expect(await request).toMatchObject({ ok: true, status: 200, body: 'origin ok\n' })
  })

  it('SOCKS: deny is reply 0x02', async () => {
    const held = socksConnect(proxy.port('socks'), 'n49.allowed.test', origin.port)
    answer((await pendingFor(proxy, 'n49.allowed.test')).id, 'deny')
    expect((await held).code).toBe(0x02)
  })

  it('plain HTTP: held with no dial; deny is a 403, once forwards it', async () => {
    const before = origin.connections()
    const url = `http://http.allowed.test:${origin.port}/held`
    const denied = httpViaProxy(proxy.port('http'), url)
    const first = await pendingFor(proxy, 'http.allowed.test')
    expect(first).toMatchObject({ protocol: 'http', method: 'GET', path: '/held' })
    expect(origin.connections()).toBe(before)
    answer(first.id, 'deny')
    const refused = await denied
    expect(refused.status).toBe(403)
    expect(refused.body).toContain('approval-denied')
    expect(origin.connections()).toBe(before)

    const allowed = httpViaProxy(proxy.port('http'), url, { method: 'POST', body: 'payload' })
    answer((await pendingFor(proxy, 'http.allowed.test')).id, 'once')
    const ok = await allowed
    expect(ok.status).toBe(200)
    expect(origin.text()).toContain('payload')
  })

  it('transparent TLS: held after the ClientHello with no dial; once completes the handshake', async () => {
    const before = tlsOrigin.connections()
    const { got } = await transparentTlsGet()
    const pending = await pendingFor(proxy, 'tls.allowed.test')
    expect(pending).toMatchObject({ protocol: 'tls', port: tlsOrigin.port })
    expect(tlsOrigin.connections()).toBe(before)
    answer(pending.id, 'once')
    expect((await got).status).toBe(200)
  })

  it('a client that leaves while held ends its hold: no dial, a deny in the log', async () => {
    const since = proxy.mark()
    const before = origin.connections()
    const client = await connectHeld('gone.allowed.test', origin.port)
    const pending = await pendingFor(proxy, 'gone.allowed.test')
    client.destroy()
    await nothingHeld(proxy)
    const event = await proxy.waitForEvent((e) => e.host === 'gone.allowed.test', { since })
    expect(event).toMatchObject({
      action: 'deny',
      reason: 'approval-denied',
      approval: { id: pending.id, by: 'isorun: the client left' },
      bytesUp: 0,
      bytesDown: 0,
    })
    expect(origin.connections()).toBe(before)
  })

  it('idle and first-bytes deadlines do not cut a held connection', async () => {
    const client = await connectHeld('idle.allowed.test', origin.port)
    const pending = await pendingFor(proxy, 'idle.allowed.test')
    // Several times the 300 ms deadlines, and many sweeps, pass while it is held.
    await new Promise((r) => setTimeout(r, 1500))
    expect(client.closed || client.ended).toBe(false)
    expect(proxy.running.context.approvals.held).toBe(1)
    answer(pending.id, 'once')
    await client.waitForText('\r\n\r\n')
    expect(client.text).toMatch(/^HTTP\/1\.1 200 /)
    client.destroy()
  })

  it('timeout: CONNECT gets a 403 and SOCKS 0x02, never a hang', async () => {
    const since = quick.mark()
    const connect = await connectHeld('timeout.allowed.test', origin.port, quick)
    const socks = socksConnect(quick.port('socks'), 'timeout.allowed.test', origin.port)
    await connect.waitForClose()
    expect(connect.text).toMatch(/^HTTP\/1\.1 403 /)
    expect(connect.text).toContain('approval-timeout')
    expect((await socks).code).toBe(0x02)
    const event = await quick.waitForEvent((e) => e.host === 'timeout.allowed.test', { since })
    expect(event).toMatchObject({ action: 'deny', reason: 'approval-timeout' })
  })

  it('50 concurrent held connections (CONNECT and HTTP) are all answered correctly', async () => {
    const before = origin.connections()
    const names = Array.from({ length: 49 }, (_, i) => `n${i}.allowed.test`)
    const outcomes = names.map(async (host, i) => {
      if (i % 2) {
        const r = await httpViaProxy(proxy.port('http'), `http://${host}:${origin.port}/burst`)
        return r.status
      }
      const client = await connectHeld(host, origin.port)
      await client.waitForText('\r\n\r\n')
      const status = Number(client.text.slice(9, 12))
      client.destroy()
      return status
    })
    const approvals = proxy.running.context.approvals
    let after = -1
    let pending: PendingApprovalView[] = []
    const burst = (): PendingApprovalView[] =>
      pending.filter((p) => /^n\d+\.allowed\.test$/.test(p.host) && p.waiting > 0)
    while (burst().length < names.length) {
      const polled = await approvals.poll(after, 10_000)
      after = polled.version
      pending = polled.pending
    }
    expect(origin.connections()).toBe(before)
    for (const p of burst())
      answer(p.id, Number(/^n(\d+)/.exec(p.host)?.[1]) % 4 < 2 ? 'once' : 'deny')
    const got = await Promise.all(outcomes)
    got.forEach((status, i) => expect(status, names[i]).toBe(i % 4 < 2 ? 200 : 403))
    await nothingHeld(proxy)
    expect(approvals.pending().filter((p) => /^n\d+\./.test(p.host))).toEqual([])
  })
})

describe('nothing slips through while held', () => {
  it('SOCKS: bytes sent before the reply wait, and after once only requests for the target go out', async () => {
    const before = origin.received().length
    const client = await RawClient.connect(proxy.port('socks'))
    client.write(socksRequest('smuggle.allowed.test', origin.port))
    client.write(
      `GET /ok HTTP/1.1\r\nHost: smuggle.allowed.test:${origin.port}\r\n\r\n` +
        `GET /smuggled HTTP/1.1\r\nHost: evil.test:${origin.port}\r\n\r\n`,
    )
    const pending = await pendingFor(proxy, 'smuggle.allowed.test')
    expect(origin.received().length).toBe(before)
    answer(pending.id, 'once')
    await client.waitForClose()
    expect(client.data[3]).toBe(0x00)
    expect(client.text).toContain('origin ok')
    expect(client.text).toContain('403 Forbidden')
    const sent = sentSince(before)
    expect(sent).toContain('GET /ok ')
    expect(sent).not.toContain('evil.test')
  })

  it('transparent TLS: what follows the ClientHello is not relayed while held, and deny relays nothing', async () => {
    const before = tlsOrigin.connections()
    const { client, got } = await transparentTlsGet()
    const secure = got.catch((err: Error) => err)
    const pending = await pendingFor(proxy, 'tls.allowed.test')
    client.write(Buffer.from('bytes after the ClientHello'))
    answer(pending.id, 'deny')
    expect(await secure).toBeInstanceOf(Error)
    expect(tlsOrigin.connections()).toBe(before)
  })

  it('transparent HTTP: held with no dial; deny is a 403', async () => {
    const before = origin.connections()
    const client = await RawClient.connect(proxy.port('plain'))
    client.write(`GET /plain HTTP/1.1\r\nHost: plain.allowed.test\r\n\r\n`)
    const pending = await pendingFor(proxy, 'plain.allowed.test')
    expect(pending).toMatchObject({ protocol: 'http', path: '/plain' })
    answer(pending.id, 'deny')
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 403 /)
    expect(origin.connections()).toBe(before)
  })

  it('plain HTTP: a request pipelined behind a held one that is refused is never sent', async () => {
    const before = origin.connections()
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `GET http://first.allowed.test:${origin.port}/a HTTP/1.1\r\nHost: first.allowed.test:${origin.port}\r\n\r\n` +
        `GET http://second.allowed.test:${origin.port}/b HTTP/1.1\r\nHost: second.allowed.test:${origin.port}\r\n\r\n`,
    )
    const first = await pendingFor(proxy, 'first.allowed.test')
    const second = await pendingFor(proxy, 'second.allowed.test')
    // Each is decided (and held) on its own; once the first is refused, the one behind it is
    // never sent, whatever its own answer.
    answer(first.id, 'deny')
    answer(second.id, 'once')
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 403 /)
    expect(client.text).not.toContain('origin ok')
    expect(origin.connections()).toBe(before)
  })

  it('a plain HTTP client that leaves while held ends its hold and costs nothing', async () => {
    const since = proxy.mark()
    const before = origin.connections()
    const client = await RawClient.connect(proxy.port('http'))
    client.write(
      `POST http://left.allowed.test:${origin.port}/x HTTP/1.1\r\nHost: left.allowed.test:${origin.port}\r\nContent-Length: 5\r\n\r\nhello`,
    )
    await pendingFor(proxy, 'left.allowed.test')
    client.destroy()
    await nothingHeld(proxy)
    const event = await proxy.waitForEvent((e) => e.host === 'left.allowed.test', { since })
    expect(event).toMatchObject({ action: 'deny', approval: { by: 'isorun: the client left' } })
    expect(origin.connections()).toBe(before)
  })
})

describe('an approval answers only the question it was asked', () => {
  it('a name is not looked up while held; once approved, its private address is still refused', async () => {
    const dns = await startDnsStub()
    dns.set('internal.held.test', { a: ['10.1.2.3'] })
    const p = await startTestProxy({
      policy: { onUnknown: 'ask', approvalTimeoutMs: 120_000 },
      resolve: {},
      listeners: ['http'],
      extra: { dns: { servers: [dns.server] } },
    })
    try {
      const before = dials().length
      const client = await connectHeld('internal.held.test', 443, p)
      const pending = await pendingFor(p, 'internal.held.test')
      expect(dns.questions('internal.held.test')).toEqual([])
      p.running.context.approvals.answer(pending.id, { answer: 'once', by: 'test' })
      await client.waitForClose()
      expect(client.text).toMatch(/^HTTP\/1\.1 403 /)
      expect(client.text).toContain('special-address')
      expect(dns.questions('internal.held.test').length).toBeGreaterThan(0)
      // Only the test's own connection to the proxy: nothing went towards 10.1.2.3.
      expect(
        dials()
          .slice(before)
          .map((d) => d.host),
      ).toEqual(['127.0.0.1'])
    } finally {
      await p.close()
      await dns.close()
    }
  })
})
