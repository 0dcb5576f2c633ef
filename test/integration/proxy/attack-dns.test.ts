// The sandbox attacks the proxy's own name lookups (the DNS cache) and its DNS
// listener, with a DNS server on loopback that the test controls and that
// records every question it gets: an answer that changes between two
// connections (TTL 0), an answer with a private address among public ones, a
// hosts-file entry naming a private address, spellings of one name, and names
// the policy refuses or asks about. The ground truth is what the recording
// origin received and which names reached the DNS server.

import dgram from 'node:dgram'
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dnsPacket from 'dns-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectNoBlockedDial, marker } from '../../helpers/attacks.js'
import { httpViaProxy, RawClient, socksConnect } from '../../helpers/clients.js'
import { startDnsStub, type DnsStub } from '../../../bench/lib/dns-stub.js'
import { dials, freePort, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let dns: DnsStub
let origin: RecordingOrigin
let hostsFile: string
let O: number

/** CONNECT on a raw socket: the status the proxy answered. */
async function connectStatus(proxyPort: number, authority: string): Promise<number> {
  const client = await RawClient.connect(proxyPort)
  client.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
  const data = await client.waitForText('\r\n\r\n')
  client.destroy()
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(data.toString('latin1'))?.[1])
}

/** A DNS response's code by name (dns-packet decodes it; its types leave it out). */
function rcodeOf(message: Buffer): string {
  return (dnsPacket.decode(message) as { rcode?: string }).rcode ?? ''
}

/** One question to a DNS listener over UDP: the response code. */
function askUdp(port: number, name: string, type: 'A' | 'AAAA'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4')
    const timer = setTimeout(() => {
      socket.close()
      reject(new Error(`no DNS answer for ${name}`))
    }, 20_000)
    socket.on('message', (message) => {
      clearTimeout(timer)
      socket.close()
      resolve(rcodeOf(message))
    })
    socket.send(
      dnsPacket.encode({ type: 'query', id: 7, questions: [{ type, name }] }),
      port,
      '127.0.0.1',
    )
  })
}

/** One question to a DNS listener over TCP: the response code. */
function askTcp(port: number, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    let data = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      if (data.length < 2 || data.length < 2 + data.readUInt16BE(0)) return
      socket.destroy()
      resolve(rcodeOf(data.subarray(2)))
    })
    socket.on('error', reject)
    socket.write(dnsPacket.streamEncode({ type: 'query', id: 9, questions: [{ type: 'A', name }] }))
  })
}

beforeAll(async () => {
  dns = await startDnsStub()
  origin = await startRecordingOrigin()
  O = origin.port
  hostsFile = join(mkdtempSync(join(tmpdir(), 'isorun-attack-hosts-')), 'hosts')
  writeFileSync(hostsFile, '10.9.9.9 hosted.allowed.test\n127.0.0.1 fine.allowed.test\n')
})

afterAll(async () => {
  await Promise.all([dns?.close(), origin?.close()])
})

describe('the DNS cache under an enforcing policy', () => {
  let proxy: TestProxy
  let dnsPort: number

  beforeAll(async () => {
    dnsPort = await freePort()
    proxy = await startTestProxy({
      // The DNS listener answers names allowed on 443 or 80, the transparent ports.
      allow: [`*.allowed.test:${O}`, 'listener.allowed.test:443'],
      resolve: {},
      listeners: ['http', 'socks', 'plain', 'dns'],
      ports: { dns: dnsPort },
      // TTL 0 kept for 0 s: every connection looks the name up again.
      extra: {
        dns: { servers: [dns.server], hostsFile, minTtlSeconds: 0 },
        transparentPorts: { plain: O },
        dnsAnswerAddress: '127.0.0.42',
      },
    })
  })

  afterAll(async () => {
    await proxy?.close()
  })

  it('rebinding: an answer that changes to a private address between connections is refused on every path', async () => {
    dns.set('rebind.allowed.test', { a: ['127.0.0.1'], ttl: 0 })
    const first = marker('rebind-first')
    const ok = await httpViaProxy(proxy.port('http'), `http://rebind.allowed.test:${O}${first}`)
    expect(ok.status).toBe(200)
    await origin.waitFor(() => origin.text().includes(first))

    dns.set('rebind.allowed.test', { a: ['10.0.0.1'], ttl: 0 })
    const before = dials().length
    const since = proxy.mark()
    const m = marker('rebind-second')
    const refused = await httpViaProxy(proxy.port('http'), `http://rebind.allowed.test:${O}${m}`)
    expect(refused.status).toBe(403)
    expect(await connectStatus(proxy.port('http'), `rebind.allowed.test:${O}`)).toBe(403)
    const socks = await socksConnect(proxy.port('socks'), 'rebind.allowed.test', O)
    socks.socket.destroy()
    expect(socks.code).toBe(0x02)
    const transparent = await RawClient.connect(proxy.port('plain'))
    transparent.write(`GET ${m} HTTP/1.1\r\nHost: rebind.allowed.test\r\nConnection: close\r\n\r\n`)
    await transparent.waitForClose()
    expect(transparent.text).toMatch(/^HTTP\/1\.1 403 /)
    const events = await proxy.waitForEvents(4, (e) => e.host === 'rebind.allowed.test', { since })
    for (const e of events) expect(e).toMatchObject({ action: 'deny', reason: 'special-address' })
    expect(origin.text()).not.toContain(m)
    expectNoBlockedDial(before)
  })

  it('an answer with a private address among loopback ones is refused, and nothing is dialled', async () => {
    dns.set('mixed.allowed.test', { a: ['127.0.0.1', '10.0.0.7'], ttl: 60 })
    dns.set('mixed6.allowed.test', { a: ['127.0.0.1'], aaaa: ['fd00::1'], ttl: 60 })
    const before = dials().length
    for (const name of ['mixed.allowed.test', 'mixed6.allowed.test']) {
      const m = marker('mixed')
      const r = await httpViaProxy(proxy.port('http'), `http://${name}:${O}${m}`)
      expect(r.status).toBe(403)
      expect(await connectStatus(proxy.port('http'), `${name}:${O}`)).toBe(403)
      expect(origin.text()).not.toContain(m)
    }
    expectNoBlockedDial(before)
  })

  it('a hosts-file entry naming a private address is refused; one naming loopback works', async () => {
    const before = dials().length
    const m = marker('hosted')
    expect(
      (await httpViaProxy(proxy.port('http'), `http://hosted.allowed.test:${O}${m}`)).status,
    ).toBe(403)
    expect(await connectStatus(proxy.port('http'), `hosted.allowed.test:${O}`)).toBe(403)
    const ok = marker('hosts-loopback')
    expect(
      (await httpViaProxy(proxy.port('http'), `http://fine.allowed.test:${O}${ok}`)).status,
    ).toBe(200)
    expect(origin.text()).not.toContain(m)
    expect(dns.questions('hosted.allowed.test')).toEqual([])
    expectNoBlockedDial(before)
  })

  it('spellings of one name (case, trailing dot) share one cache entry and one question', async () => {
    dns.set('spelled.allowed.test', { a: ['127.0.0.1'], ttl: 300 })
    for (const spelling of [
      'spelled.allowed.test',
      'SPELLED.Allowed.TEST.',
      'Spelled.allowed.test.',
    ])
      expect(await connectStatus(proxy.port('http'), `${spelling}:${O}`)).toBe(200)
    expect(
      dns
        .questions('spelled.allowed.test')
        .map((q) => q.type)
        .sort(),
    ).toEqual(['A', 'AAAA'])
  })

  it('names the policy refuses never reach the DNS server, in any spelling, on any ingress', async () => {
    const names = ['refused.test', 'REFUSED.TEST.', 'allowed.test.refused.test', 'refused']
    for (const name of names) {
      expect(await connectStatus(proxy.port('http'), `${name}:${O}`)).toBe(403)
      expect((await httpViaProxy(proxy.port('http'), `http://${name}:${O}/`)).status).toBe(403)
      const socks = await socksConnect(proxy.port('socks'), name, O)
      socks.socket.destroy()
      expect(socks.code).toBe(0x02)
    }
    // An allowed name on a port no rule names is refused before any lookup too.
    expect(await connectStatus(proxy.port('http'), `unlooked.allowed.test:${O + 1}`)).toBe(403)
    const asked = dns.questions().map((q) => q.name)
    expect(asked.filter((n) => n.includes('refused') || n.startsWith('unlooked'))).toEqual([])
  })

  it("the sandbox's DNS listener forwards nothing, allowed or refused, over UDP and TCP", async () => {
    const before = dns.questions().length
    expect(await askUdp(dnsPort, 'listener.allowed.test', 'A')).toBe('NOERROR')
    expect(await askUdp(dnsPort, 'listener.allowed.test', 'AAAA')).toBe('NOERROR')
    expect(await askUdp(dnsPort, 'listener-refused.test', 'A')).toBe('REFUSED')
    expect(await askTcp(dnsPort, 'listener.allowed.test')).toBe('NOERROR')
    expect(await askTcp(dnsPort, 'listener-refused.test')).toBe('REFUSED')
    expect(dns.questions().slice(before)).toEqual([])
  })
})

describe('with onUnknown: ask, a name no rule allows', () => {
  let proxy: TestProxy
  let dnsPort: number

  beforeAll(async () => {
    dnsPort = await freePort()
    proxy = await startTestProxy({
      // Nobody answers: each held request is refused when its approval times out.
      policy: { onUnknown: 'ask', approvalTimeoutMs: 200 },
      allow: [`*.allowed.test:${O}`],
      resolve: {},
      listeners: ['http', 'socks', 'plain', 'dns'],
      ports: { dns: dnsPort },
      extra: {
        dns: { servers: [dns.server], hostsFile },
        transparentPorts: { plain: O },
        dnsAnswerAddress: '127.0.0.42',
        dnsApprovalWaitMs: 50,
      },
    })
  })

  afterAll(async () => {
    await proxy?.close()
  })

  it('costs no lookup and no upstream traffic on any ingress, held or refused', async () => {
    dns.set('unknown.test', { a: ['127.0.0.1'], ttl: 60 })
    const before = dials().length
    const m = marker('ask')
    expect(await connectStatus(proxy.port('http'), `unknown.test:${O}`)).toBe(403)
    expect((await httpViaProxy(proxy.port('http'), `http://unknown.test:${O}${m}`)).status).toBe(
      403,
    )
    const socks = await socksConnect(proxy.port('socks'), 'unknown.test', O)
    socks.socket.destroy()
    expect(socks.code).toBe(0x02)
    const transparent = await RawClient.connect(proxy.port('plain'))
    transparent.write(`GET ${m} HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n`)
    await transparent.waitForClose()
    expect(transparent.text).toMatch(/^HTTP\/1\.1 403 /)
    // The DNS listener holds the question (then answers nothing for it): still no lookup.
    await askUdp(dnsPort, 'unknown.test', 'A').catch(() => undefined)
    expect(dns.questions('unknown.test')).toEqual([])
    expect(origin.text()).not.toContain(m)
    expect(
      dials()
        .slice(before)
        .filter((d) => d.port === O),
    ).toEqual([])
  })
})
