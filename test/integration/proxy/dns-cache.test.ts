// The proxy's own lookups of upstream names, against a real DNS server on
// loopback that counts the questions it gets: answers are kept for their TTL
// within the floor and the ceiling, overlapping lookups of one name share one
// question, a name that does not exist is remembered for the floor, the hosts
// file and --resolve overrides answer without DNS, and through the proxy only
// allowed names are ever looked up, their addresses checked before any dial.
// The resolver's clock is moved by the tests instead of waiting.

import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { canonicalHost } from '../../../src/policy/index.js'
import { Resolver, type ResolverOptions } from '../../../src/proxy/resolver.js'
import { UpstreamError } from '../../../src/proxy/upstream.js'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import { openTunnel, RawClient, tlsGet } from '../../helpers/clients.js'
import { startDnsStub, type DnsStub } from '../../../bench/lib/dns-stub.js'
import { dials, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startTlsEcho, type Upstream } from '../../helpers/upstreams.js'

let dns: DnsStub
let hostsFile: string
let clock = 0

beforeAll(async () => {
  dns = await startDnsStub()
  hostsFile = join(mkdtempSync(join(tmpdir(), 'isorun-hosts-')), 'hosts')
  writeFileSync(hostsFile, '127.0.0.7 hosted.test # a comment\n')
})

afterAll(async () => {
  await dns?.close()
})

beforeEach(() => {
  clock = 1_000_000
})

/** A resolver asking the test's DNS server, on the test's clock (a long timeout: no retries). */
function resolverWith(options: ResolverOptions = {}): Resolver {
  return new Resolver({
    servers: [dns.server],
    hostsFile,
    now: () => clock,
    timeoutMs: 30_000,
    ...options,
  })
}

const resolve = (r: Resolver, name: string): Promise<string[]> => r.resolve(canonicalHost(name))

describe('the DNS cache', () => {
  it('keeps an answer for its TTL, then asks again', async () => {
    dns.set('ttl.test', { a: ['127.0.0.2'], ttl: 60 })
    const r = resolverWith()
    expect(await resolve(r, 'ttl.test')).toEqual(['127.0.0.2'])
    expect(
      dns
        .questions('ttl.test')
        .map((q) => q.type)
        .sort(),
    ).toEqual(['A', 'AAAA'])
    clock += 59_000
    expect(await resolve(r, 'ttl.test')).toEqual(['127.0.0.2'])
    expect(r.resolveLocal(canonicalHost('ttl.test'))).toEqual(['127.0.0.2'])
    expect(dns.questions('ttl.test')).toHaveLength(2)
    clock += 2_000
    expect(r.resolveLocal(canonicalHost('ttl.test'))).toBeUndefined()
    expect(await resolve(r, 'ttl.test')).toEqual(['127.0.0.2'])
    expect(dns.questions('ttl.test')).toHaveLength(4)
  })

  it('keeps answers at least the floor and at most the ceiling', async () => {
    dns.set('zero.test', { a: ['127.0.0.2'], ttl: 0 })
    dns.set('long.test', { a: ['127.0.0.3'], ttl: 86_400 })
    const r = resolverWith({ minTtlSeconds: 10, maxTtlSeconds: 100 })
    await resolve(r, 'zero.test')
    await resolve(r, 'long.test')
    clock += 9_000
    await resolve(r, 'zero.test')
    expect(dns.questions('zero.test')).toHaveLength(2)
    clock += 2_000
    await resolve(r, 'zero.test')
    expect(dns.questions('zero.test')).toHaveLength(4)
    clock += 88_000 // 99 s after the first answer
    await resolve(r, 'long.test')
    expect(dns.questions('long.test')).toHaveLength(2)
    clock += 2_000
    await resolve(r, 'long.test')
    expect(dns.questions('long.test')).toHaveLength(4)
  })

  it('lets overlapping lookups of one name share one question', async () => {
    dns.set('busy.test', { a: ['127.0.0.4'] })
    const r = resolverWith()
    const answers = await Promise.all(Array.from({ length: 20 }, () => resolve(r, 'busy.test')))
    for (const a of answers) expect(a).toEqual(['127.0.0.4'])
    expect(
      dns
        .questions('busy.test')
        .map((q) => q.type)
        .sort(),
    ).toEqual(['A', 'AAAA'])
  })

  it('answers IPv4 first, and IPv6 too', async () => {
    dns.set('dual.test', { a: ['127.0.0.5'], aaaa: ['::1'] })
    expect(await resolve(resolverWith(), 'dual.test')).toEqual(['127.0.0.5', '::1'])
  })

  it('refuses a name that does not exist, and remembers that for the floor', async () => {
    const r = resolverWith({ minTtlSeconds: 10 })
    const failure = await resolve(r, 'nowhere.test').catch((err: unknown) => err)
    expect(failure).toBeInstanceOf(UpstreamError)
    expect(failure).toMatchObject({
      kind: 'resolve',
      message: expect.stringContaining('nowhere.test'),
    })
    await expect(resolve(r, 'nowhere.test')).rejects.toBeInstanceOf(UpstreamError)
    expect(dns.questions('nowhere.test')).toHaveLength(2)
    clock += 11_000
    await expect(resolve(r, 'nowhere.test')).rejects.toBeInstanceOf(UpstreamError)
    expect(dns.questions('nowhere.test')).toHaveLength(4)
  })

  it('answers from the hosts file without DNS, and sees the file change', async () => {
    const r = resolverWith()
    expect(r.resolveLocal(canonicalHost('HOSTED.test.'))).toEqual(['127.0.0.7'])
    writeFileSync(hostsFile, '127.0.0.8 hosted.test\n::1 hosted.test other.test\n')
    utimesSync(hostsFile, new Date(), new Date(Date.now() + 5000)) // a new mtime, however fast
    clock += 1_000
    expect(await resolve(r, 'hosted.test')).toEqual(['127.0.0.8', '::1'])
    expect(dns.questions('hosted.test')).toEqual([])
  })

  it('lets --resolve overrides beat the hosts file and DNS', async () => {
    dns.set('both.test', { a: ['127.0.0.2'] })
    const r = resolverWith({
      overrides: new Map([
        ['hosted.test', ['127.0.0.9']],
        ['both.test', ['127.0.0.9']],
      ]),
    })
    expect(await resolve(r, 'hosted.test')).toEqual(['127.0.0.9'])
    expect(await resolve(r, 'both.test')).toEqual(['127.0.0.9'])
    expect(dns.questions('both.test')).toEqual([])
  })

  it('never passes a name with a dot on to the system resolver when the servers fail', async () => {
    // getaddrinfo would try the search domains after the failure, and could find another
    // name's address. The system resolver here records what reaches it and answers nothing.
    const reached: string[] = []
    const r = resolverWith({
      systemLookup: (name) => {
        reached.push(name)
        return Promise.reject(new Error('the system resolver was asked'))
      },
    })
    for (const rcode of ['SERVFAIL', 'REFUSED'] as const) {
      const name = `${rcode.toLowerCase()}.test`
      dns.set(name, { rcode })
      await expect(resolve(r, name)).rejects.toThrow(
        new UpstreamError(
          `cannot resolve ${name}: the DNS servers failed (${rcode === 'SERVFAIL' ? 'ESERVFAIL' : 'EREFUSED'})`,
          'resolve',
        ),
      )
      expect(dns.questions(name).length).toBeGreaterThan(0)
    }
    // A single label is the system resolver's, as are all names when no server is set.
    await expect(resolve(r, 'mirror')).rejects.toThrow('the system resolver was asked')
    expect(reached).toEqual(['mirror'])
  })

  it('leaves a single-label name to the system resolver, whose search domains may complete it', async () => {
    // localhost is in every system's hosts file: the system resolver answers without the network.
    expect(await resolve(resolverWith(), 'localhost')).toContain('127.0.0.1')
    expect(dns.questions('localhost')).toEqual([])
  })
})

describe('lookups through the proxy', () => {
  let certs: TestCerts
  let echo: Upstream
  let proxy: TestProxy

  beforeAll(async () => {
    certs = await testCerts()
    echo = await startTlsEcho()
    dns.set('www.allowed.test', { a: ['127.0.0.1'], ttl: 300 })
    dns.set('b.test', { a: ['10.0.0.1'] })
    proxy = await startTestProxy({
      allow: [`www.allowed.test:${echo.port}`, `b.test:${echo.port}`],
      resolve: {},
      listeners: ['http'],
      extra: { dns: { servers: [dns.server], hostsFile } },
    })
  })

  afterAll(async () => {
    await proxy?.close()
    await echo?.close()
  })

  it('looks a name up once for many connections within its TTL', async () => {
    for (let i = 0; i < 3; i++) {
      const tunnel = await openTunnel(proxy.port('http'), `www.allowed.test:${echo.port}`)
      expect(tunnel.status).toBe(200)
      const r = await tlsGet(tunnel.socket, {
        servername: 'www.allowed.test',
        ca: certs.ca,
        hostHeader: 'www.allowed.test',
      })
      expect(r.status).toBe(200)
    }
    expect(dns.questions('www.allowed.test')).toHaveLength(2) // one A, one AAAA
  })

  it('never looks up a name the policy refuses', async () => {
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT blocked.test:${echo.port} HTTP/1.1\r\nHost: blocked.test\r\n\r\n`)
    await client.waitForText('403')
    expect(dns.questions('blocked.test')).toEqual([])
  })

  it('checks the addresses DNS gave before any dial', async () => {
    const since = proxy.mark()
    const dialled = dials().length
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT b.test:${echo.port} HTTP/1.1\r\nHost: b.test\r\n\r\n`)
    await client.waitForText('403')
    const event = await proxy.waitForEvent((e) => e.host === 'b.test', { since })
    expect(event).toMatchObject({ action: 'deny', reason: 'special-address' })
    // The only connection opened was the client's own, to the proxy.
    expect(dials().slice(dialled)).toEqual([
      { host: '127.0.0.1', port: proxy.port('http'), blocked: false },
    ])
  })
})
