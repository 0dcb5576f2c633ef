// The DNS listener through real resolvers (Node's c-ares Resolver and dig,
// over UDP and TCP): an allowed name gets one A record with the proxy's answer
// address (never a real resolution), a refused name REFUSED, AAAA an empty
// NOERROR, other types REFUSED; every query is exactly one decision event.

import * as dgram from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import * as dnsPacket from 'dns-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DecisionEvent } from '../../../src/proxy/decision-log.js'
import { freePort, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { run } from '../../helpers/run.js'

const ANSWER = '127.0.0.42'
let proxy: TestProxy
let port: number
let resolver: Resolver

beforeAll(async () => {
  port = await freePort()
  proxy = await startTestProxy({
    // Rules without a port: DNS answers for names allowed on 443 or 80.
    allow: ['allowed.test', '*.allowed.test', 'pypi.org', `ssh.test:2222`],
    deny: ['blocked.allowed.test'],
    listeners: ['dns'],
    ports: { dns: port },
    extra: { dnsAnswerAddress: ANSWER },
  })
  resolver = new Resolver({ timeout: 3000, tries: 1 })
  resolver.setServers([`127.0.0.1:${port}`])
})

afterAll(async () => {
  await proxy?.close()
})

async function code(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (err: NodeJS.ErrnoException) => err.code ?? String(err),
  )
}

function dig(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('dig', [`@127.0.0.1`, '-p', String(port), '+time=3', '+tries=1', ...args])
}

describe("Node's Resolver", () => {
  it('an allowed name gets an A record with the answer address; the event says why', async () => {
    const since = proxy.mark()
    expect(await resolver.resolve4('allowed.test')).toEqual([ANSWER])
    const event = await proxy.waitForEvent((e) => e.host === 'allowed.test', { since })
    expect(event).toMatchObject({
      protocol: 'dns',
      host: 'allowed.test',
      port: 0,
      qtype: 'A',
      action: 'allow',
      rule: 'allowed.test',
      reason: 'allowed-by-rule',
    })
    expect(event.address).toBeUndefined()
    expect(proxy.logLines().at(-1)).toMatchObject({ msg: 'allowed', protocol: 'dns', qtype: 'A' })
  })

  it('wildcards, case and a trailing dot', async () => {
    expect(await resolver.resolve4('deep.www.allowed.test')).toEqual([ANSWER])
    expect(await resolver.resolve4('PyPI.ORG.')).toEqual([ANSWER])
  })

  it.each([
    ['evil.test', 'not-in-allow-list'],
    ['evilallowed.test', 'not-in-allow-list'],
    ['allowed.test.evil.test', 'not-in-allow-list'],
    ['blocked.allowed.test', 'denied-by-rule'],
    // Allowed on port 2222 only: DNS steers to the transparent 443/80 listeners, so no answer.
    ['ssh.test', 'not-in-allow-list'],
  ])('%s is REFUSED (%s)', async (name, reason) => {
    const since = proxy.mark()
    expect(await code(resolver.resolve4(name))).toBe('EREFUSED')
    const event = await proxy.waitForEvent((e) => e.host === name, { since })
    expect(event).toMatchObject({ protocol: 'dns', qtype: 'A', action: 'deny', reason })
    expect(proxy.logLines().at(-1)).toMatchObject({ msg: 'blocked', host: name })
  })

  it('AAAA for an allowed name is an empty answer (clients fall back to IPv4)', async () => {
    const since = proxy.mark()
    expect(await code(resolver.resolve6('allowed.test'))).toBe('ENODATA')
    const event = await proxy.waitForEvent((e) => e.qtype === 'AAAA', { since })
    expect(event).toMatchObject({ host: 'allowed.test', action: 'allow' })
  })

  it('AAAA for a refused name is REFUSED', async () => {
    expect(await code(resolver.resolve6('evil.test'))).toBe('EREFUSED')
  })

  it.each(['resolveTxt', 'resolveMx', 'resolveNs', 'resolveSrv'] as const)(
    '%s for an allowed name is REFUSED: only A and AAAA are answered',
    async (method) => {
      const since = proxy.mark()
      expect(await code(resolver[method]('allowed.test'))).toBe('EREFUSED')
      const event = await proxy.waitForEvent((e) => e.host === 'allowed.test', { since })
      expect(event).toMatchObject({ action: 'deny', reason: 'dns-type-refused' })
    },
  )
})

describe('dig', () => {
  it('UDP and TCP: A for an allowed name', async () => {
    for (const transport of ['+notcp', '+tcp']) {
      const r = await dig([transport, '+short', 'allowed.test', 'A'])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout.trim()).toBe(ANSWER)
    }
  })

  it('a refused name: status REFUSED, no answer', async () => {
    for (const transport of ['+notcp', '+tcp']) {
      const r = await dig([transport, 'evil.test', 'A'])
      expect(r.stdout).toMatch(/status: REFUSED/)
      expect(r.stdout).toMatch(/ANSWER: 0/)
    }
  })

  it('AAAA: NOERROR with no records; TXT and ANY: REFUSED', async () => {
    const aaaa = await dig(['allowed.test', 'AAAA'])
    expect(aaaa.stdout).toMatch(/status: NOERROR/)
    expect(aaaa.stdout).toMatch(/ANSWER: 0/)
    for (const type of ['TXT', 'ANY', 'HTTPS']) {
      const r = await dig(['allowed.test', type])
      expect(r.stdout, type).toMatch(/status: REFUSED/)
    }
  })
})

/** The events logged for what `send` asks, checked to be all of them with a query after it. */
async function eventsOf(send: () => Promise<unknown>): Promise<DecisionEvent[]> {
  const since = proxy.mark()
  await send()
  // The sentinel's event comes after every event of what was sent before it.
  const sentinel = `sentinel-${since}.allowed.test`
  expect(await resolver.resolve4(sentinel)).toEqual([ANSWER])
  await proxy.waitForEvent((e) => e.host === sentinel, { since })
  return proxy.events.slice(since).filter((e) => e.host !== sentinel)
}

/** One raw UDP exchange with the listener; resolves with the response. */
function exchange(message: Buffer): Promise<Buffer> {
  const socket = dgram.createSocket('udp4')
  return new Promise<Buffer>((resolve, reject) => {
    socket.once('message', resolve)
    socket.once('error', reject)
    socket.send(message, port, '127.0.0.1')
  }).finally(() => socket.close())
}

describe('one decision per query', () => {
  it('a TXT query for an allowed name is one event, refused by type', async () => {
    const events = await eventsOf(() => code(resolver.resolveTxt('allowed.test')))
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({
      host: 'allowed.test',
      qtype: 'TXT',
      action: 'deny',
      reason: 'dns-type-refused',
    })
  })

  it('an allowed A query is one event, the one its answer came from', async () => {
    const events = await eventsOf(() => resolver.resolve4('www.allowed.test'))
    expect(events).toMatchObject([{ host: 'www.allowed.test', action: 'allow', qtype: 'A' }])
  })

  it('a class CH query (dig) is refused, logged once as bad-dns-query', async () => {
    let out = ''
    const events = await eventsOf(async () => {
      out = (await dig(['+notcp', '-c', 'CH', '-t', 'TXT', 'version.bind'])).stdout
    })
    expect(out).toMatch(/status: REFUSED/)
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({
      protocol: 'dns',
      host: 'version.bind',
      qtype: 'TXT',
      action: 'deny',
      reason: 'bad-dns-query',
      detail: 'REFUSED: class 3 (only IN is served)',
    })
  })

  it('a message with two questions gets FORMERR, logged once as bad-dns-query', async () => {
    const question = dnsPacket.encode({
      type: 'query',
      id: 7,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'A', name: 'allowed.test' }],
    })
    // The same question twice, QDCOUNT 2.
    const two: Buffer = Buffer.concat([question, question.subarray(12)])
    two.writeUInt16BE(2, 4)
    let response: Buffer = Buffer.alloc(0)
    const events = await eventsOf(async () => (response = await exchange(two)))
    expect(response.readUInt16BE(0)).toBe(7)
    expect(response.readUInt16BE(2) & 0xf).toBe(1) // FORMERR
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({
      action: 'deny',
      reason: 'bad-dns-query',
      detail: 'FORMERR: 2 questions (exactly one is served)',
    })
  })
})
