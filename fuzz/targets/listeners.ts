// Fuzz target: every listener of a real proxy, started in-process on loopback
// (as the integration tests start it) with loopback upstreams: an HTTP echo
// server and an HTTPS echo server, every test name mapped to 127.0.0.1, and a
// policy that allows only allowed.test.
//
// Each input is sent as raw bytes, at once, to the HTTP proxy port, the SOCKS5
// port, the transparent TLS and HTTP listeners, DNS over UDP and TCP, and into
// a CONNECT tunnel to allowed.test; each of those connections is half-closed.
//
// Properties: the proxy closes every one of them (a listener that keeps a
// half-closed connection open is stuck); afterwards a good request on a fresh
// connection gets the right answer on every listener, and a request for a
// host the policy does not allow is still refused; the HTTP upstream never
// sees a request for any host but allowed.test; no connection is left open.
// An exception escaping the proxy crashes the process, which the fuzzer
// reports as well.

import dgram from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import * as dnsPacket from 'dns-packet'
import { testCerts, type TestCerts } from '../../test/helpers/certs.js'
import {
  httpViaProxy,
  openTunnel,
  RawClient,
  socksConnect,
  tlsGet,
} from '../../test/helpers/clients.js'
import {
  freePort,
  loopbackNames,
  startTestProxy,
  type TestProxy,
} from '../../test/helpers/proxy.js'
import {
  startHttpEcho,
  startTlsEcho,
  type HttpEcho,
  type Upstream,
} from '../../test/helpers/upstreams.js'
import { SAFETY_TIMEOUT_MS, within } from '../lib/loopback.js'
import { property, same } from '../lib/property.js'

interface Setup {
  readonly proxy: TestProxy
  readonly certs: TestCerts
  readonly httpEcho: HttpEcho
  readonly tlsEcho: Upstream
  readonly dnsPort: number
}

let setup: Promise<Setup> | undefined

async function start(): Promise<Setup> {
  const certs = await testCerts()
  const [httpEcho, tlsEcho, dnsPort] = await Promise.all([
    startHttpEcho(),
    startTlsEcho(),
    freePort(),
  ])
  const proxy = await startTestProxy({
    allow: ['allowed.test', `allowed.test:${tlsEcho.port}`, `allowed.test:${httpEcho.port}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'plain', 'dns'],
    ports: { dns: dnsPort },
    timeouts: { firstBytesMs: 1000, handshakeMs: 1000 },
    extra: { transparentPorts: { tls: tlsEcho.port, plain: httpEcho.port } },
  })
  return { proxy, certs, httpEcho, tlsEcho, dnsPort }
}

/** Sends the bytes on a fresh connection, half-closes, and waits for the proxy to close it. */
async function sendRaw(port: number, bytes: Buffer, what: string): Promise<void> {
  const client = await RawClient.connect(port)
  client.write(bytes)
  client.socket.end()
  await within(
    `${what}: the proxy did not close a half-closed connection`,
    client.waitForClose(SAFETY_TIMEOUT_MS + 1000),
  )
  client.destroy()
}

/** The bytes as the first thing inside a CONNECT tunnel to allowed.test. */
async function sendInTunnel(s: Setup, bytes: Buffer): Promise<void> {
  const client = await RawClient.connect(s.proxy.port('http'))
  const authority = `allowed.test:${s.httpEcho.port}`
  client.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
  await within('CONNECT: no answer', client.waitForText('\r\n\r\n', SAFETY_TIMEOUT_MS + 1000))
  property(
    client.text.startsWith('HTTP/1.1 200 '),
    'an allowed CONNECT was not accepted',
    client.text,
  )
  client.write(bytes)
  client.socket.end()
  await within(
    'in a tunnel: the proxy did not close a half-closed connection',
    client.waitForClose(SAFETY_TIMEOUT_MS + 1000),
  )
  client.destroy()
}

function sendDatagram(port: number, bytes: Buffer): Promise<void> {
  const socket = dgram.createSocket('udp4')
  return new Promise<void>((resolve) =>
    socket.send(bytes.subarray(0, 4096), port, '127.0.0.1', () => resolve()),
  ).finally(() => socket.close())
}

async function tcpDnsQuery(port: number, name: string): Promise<dnsPacket.DecodedPacket> {
  const query = dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name }],
  })
  const frame = Buffer.concat([Buffer.from([query.length >> 8, query.length & 255]), query])
  const client = await RawClient.connect(port)
  client.write(frame)
  const data = await client.waitFor(
    (d) => d.length >= 2 && d.length >= 2 + d.readUInt16BE(0),
    SAFETY_TIMEOUT_MS,
  )
  client.destroy()
  return dnsPacket.decode(data.subarray(2, 2 + data.readUInt16BE(0)))
}

const bodyUrl = (body: string): string => (JSON.parse(body) as { url: string }).url

/** One good request on every listener, and one refusal. */
async function everyListenerAnswers(s: Setup): Promise<void> {
  const { proxy, certs, httpEcho, tlsEcho, dnsPort } = s
  const tls = { ca: certs.ca, servername: 'allowed.test', hostHeader: 'allowed.test' }
  await Promise.all([
    (async () => {
      const plain = await httpViaProxy(
        proxy.port('http'),
        `http://allowed.test:${httpEcho.port}/ok-proxy`,
      )
      same(bodyUrl(plain.body), '/ok-proxy', 'HTTP proxy: a good request got the wrong answer')
      const refused = await httpViaProxy(proxy.port('http'), `http://evil.test:${httpEcho.port}/`)
      same(refused.status, 403, 'HTTP proxy: a host the policy does not allow was not refused')
    })(),
    (async () => {
      const tunnel = await openTunnel(proxy.port('http'), `allowed.test:${tlsEcho.port}`)
      same(tunnel.status, 200, 'CONNECT: a good tunnel was refused')
      const got = await tlsGet(tunnel.socket, { ...tls, path: '/ok-connect' })
      same(bodyUrl(got.body), '/ok-connect', 'CONNECT: a good request got the wrong answer')
    })(),
    (async () => {
      const socks = await socksConnect(proxy.port('socks'), 'allowed.test', tlsEcho.port)
      same(socks.code, 0, 'SOCKS5: a good CONNECT was refused')
      const got = await tlsGet(socks.socket, { ...tls, path: '/ok-socks' })
      same(bodyUrl(got.body), '/ok-socks', 'SOCKS5: a good request got the wrong answer')
    })(),
    (async () => {
      const socket = net.connect({ host: '127.0.0.1', port: proxy.port('tls') })
      socket.on('error', () => undefined)
      const got = await tlsGet(socket, { ...tls, path: '/ok-tls' })
      same(bodyUrl(got.body), '/ok-tls', 'transparent TLS: a good request got the wrong answer')
    })(),
    (async () => {
      const client = await RawClient.connect(proxy.port('plain'))
      client.write('GET /ok-plain HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n')
      await client.waitForClose(SAFETY_TIMEOUT_MS)
      property(
        client.text.startsWith('HTTP/1.1 200 ') && client.text.includes('"/ok-plain"'),
        'transparent HTTP: a good request got the wrong answer',
        client.text,
      )
    })(),
    (async () => {
      const resolver = new Resolver({ timeout: 5000, tries: 2 })
      resolver.setServers([`127.0.0.1:${dnsPort}`])
      same(
        await resolver.resolve4('allowed.test'),
        ['127.0.0.1'],
        'DNS over UDP: a good query got the wrong answer',
      )
      const answer = await tcpDnsQuery(dnsPort, 'allowed.test')
      same(
        answer.answers?.map((a) => ('data' in a ? a.data : undefined)),
        ['127.0.0.1'],
        'DNS over TCP: a good query got the wrong answer',
      )
      const refused = await tcpDnsQuery(dnsPort, 'evil.test')
      same((refused.flags ?? 0) & 0xf, 5, 'DNS: a name the policy does not allow was not refused')
    })(),
  ])
}

async function noConnectionLeftOpen(s: Setup): Promise<void> {
  const tracker = s.proxy.running.context.tracker
  for (let waited = 0; tracker.size > 0 && waited < SAFETY_TIMEOUT_MS; waited += 20) await sleep(20)
  same(tracker.size, 0, 'client connections are still open after every client closed')
}

function upstreamSawOnlyAllowedHosts(s: Setup): void {
  for (const [socket, hosts] of s.httpEcho.hostsBySocket())
    for (const host of hosts)
      property(
        host === 'allowed.test',
        'the HTTP upstream got a request for another host',
        socket,
        host,
      )
}

export async function fuzz(data: Buffer): Promise<void> {
  setup ??= start()
  const s = await setup
  const bytes = data.subarray(0, 8192)
  await Promise.all([
    sendRaw(s.proxy.port('http'), bytes, 'HTTP proxy'),
    sendRaw(s.proxy.port('socks'), bytes, 'SOCKS5'),
    sendRaw(s.proxy.port('tls'), bytes, 'transparent TLS'),
    sendRaw(s.proxy.port('plain'), bytes, 'transparent HTTP'),
    sendRaw(s.dnsPort, bytes, 'DNS over TCP'),
    sendDatagram(s.dnsPort, bytes),
    sendInTunnel(s, bytes),
  ])
  upstreamSawOnlyAllowedHosts(s)
  await within('good requests: no answer', everyListenerAnswers(s))
  await noConnectionLeftOpen(s)
}
