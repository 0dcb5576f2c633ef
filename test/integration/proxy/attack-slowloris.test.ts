// Slowloris on every listener: the sandbox starts its first message (a request
// head, a CONNECT head, a ClientHello, a SOCKS greeting or request, a head
// inside a tunnel) and stops. Each is cut off at its own deadline (300 ms
// here; the test waits for the close, with a generous safety net), and none
// of it reaches the origin.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RawClient, rawTunnel } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let origin: RecordingOrigin
let proxy: TestProxy
let O: number

beforeAll(async () => {
  origin = await startRecordingOrigin()
  O = origin.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'plain'],
    timeouts: { headMs: 300, handshakeMs: 300, firstBytesMs: 300 },
    extra: { transparentPorts: { tls: O, plain: O } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await origin?.close()
})

/** The start of a TLS handshake record holding a ClientHello, and no more. */
const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])

const CASES = [
  {
    name: 'a request head on the HTTP proxy port',
    open: () => RawClient.connect(proxy.port('http')),
    first: `GET http://allowed.test:${0}/slow HTTP/1.1\r\nHost: allowed.test\r\nX-Slow: `,
  },
  {
    name: 'a CONNECT head',
    open: () => RawClient.connect(proxy.port('http')),
    first: `CONNECT allowed.test:${0} HTTP/1.1\r\nX-Slow: `,
  },
  {
    name: 'a request head on the transparent HTTP listener',
    open: () => RawClient.connect(proxy.port('plain')),
    first: 'GET /slow HTTP/1.1\r\nHost: allowed.test\r\nX-Slow: ',
  },
  {
    name: 'a ClientHello on the transparent TLS listener',
    open: () => RawClient.connect(proxy.port('tls')),
    first: PARTIAL_CLIENT_HELLO,
  },
  {
    name: 'a SOCKS greeting',
    open: () => RawClient.connect(proxy.port('socks')),
    first: Buffer.from([0x05, 0x02]),
  },
  {
    name: 'a SOCKS request after the greeting',
    open: () => RawClient.connect(proxy.port('socks')),
    first: Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, 0x0c, 0x61]),
  },
  {
    name: 'a ClientHello inside a CONNECT tunnel',
    open: () => rawTunnel('connect', proxy.port('http'), 'allowed.test', O),
    first: PARTIAL_CLIENT_HELLO,
  },
  {
    name: 'a request head inside a CONNECT tunnel',
    open: () => rawTunnel('connect', proxy.port('http'), 'allowed.test', O),
    first: 'GET /slow HTTP/1.1\r\nHost: allowed.test\r\nX-Slow: ',
  },
  {
    name: 'a request head inside a SOCKS tunnel',
    open: () => rawTunnel('socks', proxy.port('socks'), 'allowed.test', O),
    first: 'GET /slow HTTP/1.1\r\nHost: allowed.test\r\nX-Slow: ',
  },
] as const

describe('a client that starts its first message and stops is cut off', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const connections = origin.connections()
    const client = await c.open()
    client.write(typeof c.first === 'string' ? c.first.replace(':0', `:${O}`) : c.first)
    await client.waitForClose()
    expect(origin.connections()).toBe(connections)
  })
})
