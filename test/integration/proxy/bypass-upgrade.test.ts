// Bypass class 2: upgrade smuggling. A request to an allowed host that asks to
// switch to h2c (or any protocol but WebSocket) would, once the upstream
// answered 101, let the client speak HTTP/2 straight to the origin with any
// :authority. On every HTTP ingress (absolute form on the HTTP proxy, HTTP
// inside CONNECT and SOCKS tunnels, transparent HTTP), only WebSocket is
// spliced, and only after a 101 that switched to WebSocket. Any other upgrade
// is served as plain HTTP/1.1 without its upgrade headers and the connection
// closes (one with a body is refused); no byte after it reaches the origin.
// Checked at the socket level against lax loopback origins that switch to
// whatever they are asked for (or to h2c whatever they are asked).

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RawClient, rawTunnel } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let origin: RecordingOrigin // switches to what it is asked for
let switcher: RecordingOrigin // answers every request with 101 h2c
let laxWebSocket: RecordingOrigin // answers 101 websocket without proving it speaks WebSocket
let proxy: TestProxy

beforeAll(async () => {
  origin = await startRecordingOrigin()
  switcher = await startRecordingOrigin({ switchTo: 'h2c' })
  laxWebSocket = await startRecordingOrigin({ switchTo: 'websocket' })
  proxy = await startTestProxy({
    allow: [
      `allowed.test:${origin.port}`,
      `allowed.test:${switcher.port}`,
      `allowed.test:${laxWebSocket.port}`,
    ],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'plain'],
    extra: { transparentPorts: { plain: origin.port } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([origin?.close(), switcher?.close(), laxWebSocket?.close()])
})

/** What an h2c client sends once it believes the connection switched: a request for another host. */
const H2_AFTER_SWITCH = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
  Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]), // empty SETTINGS
  Buffer.from([0, 0, 13, 0x1, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x01, 9]),
  Buffer.from('evil.test', 'latin1'),
])

const WS_KEY = 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'

interface Ingress {
  readonly name: string
  /** A client connected through this ingress towards `allowed.test:port`. */
  open(port: number): Promise<RawClient>
  /** The request target for a path on `allowed.test:port`. */
  target(port: number, path: string): string
  /** Whether this ingress can reach an origin on any port (the transparent one serves one). */
  readonly anyPort: boolean
}

const INGRESSES: readonly Ingress[] = [
  {
    name: 'HTTP proxy, absolute form',
    open: () => RawClient.connect(proxy.port('http')),
    target: (port, path) => `http://allowed.test:${port}${path}`,
    anyPort: true,
  },
  {
    name: 'HTTP inside CONNECT',
    open: (port) => rawTunnel('connect', proxy.port('http'), 'allowed.test', port),
    target: (_port, path) => path,
    anyPort: true,
  },
  {
    name: 'HTTP inside SOCKS5',
    open: (port) => rawTunnel('socks', proxy.port('socks'), 'allowed.test', port),
    target: (_port, path) => path,
    anyPort: true,
  },
  {
    name: 'transparent HTTP',
    open: () => RawClient.connect(proxy.port('plain')),
    target: (_port, path) => path,
    anyPort: false,
  },
]

interface Case {
  readonly name: string
  /** Upgrade-related header lines (CRLF-terminated). */
  readonly headers: string
}

const SMUGGLING: readonly Case[] = [
  {
    name: 'h2c',
    headers:
      'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n',
  },
  { name: 'h2c in upper case', headers: 'Connection: upgrade\r\nUpgrade: H2C\r\n' },
  {
    name: 'WebSocket offered with h2c',
    headers: 'Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n',
  },
  {
    name: 'h2c offered before WebSocket',
    headers: 'Connection: Upgrade\r\nUpgrade: h2c, websocket\r\n',
  },
  {
    name: 'two Upgrade headers',
    headers: 'Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n',
  },
  { name: 'TLS/1.2 (RFC 2817)', headers: 'Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n' },
  { name: 'a made-up protocol', headers: 'Connection: Upgrade\r\nUpgrade: raw-tcp\r\n' },
  { name: 'HTTP/2.0', headers: 'Connection: Upgrade\r\nUpgrade: HTTP/2.0\r\n' },
]

/** Nothing of the smuggled HTTP/2 reached the origin, and no head there asked for anything but WebSocket. */
function expectNothingSmuggled(o: RecordingOrigin): void {
  expect(o.text()).not.toMatch(/PRI \* HTTP\/2|evil\.test/)
  for (const head of o.heads()) {
    for (const value of head.headers.get('upgrade') ?? []) expect(value).toBe('websocket')
  }
}

describe.each(INGRESSES.map((i) => [i.name, i] as const))('%s', (_name, ingress) => {
  const port = (): number => origin.port

  it.each(SMUGGLING.map((c, i) => [c.name, c, i] as const))(
    'an upgrade to %s is served as HTTP/1.1 without it; the HTTP/2 sent after it never arrives',
    async (_case, c, i) => {
      const marker = `/upgrade-${ingress.name.replace(/\W+/g, '-')}-${i}`
      const client = await ingress.open(port())
      client.write(
        `GET ${ingress.target(port(), marker)} HTTP/1.1\r\nHost: allowed.test:${port()}\r\n${c.headers}\r\n`,
      )
      client.write(H2_AFTER_SWITCH)
      await client.waitForClose(10_000)
      expect(client.text).toMatch(/^HTTP\/1\.1 200 /)
      expect(client.text).toContain('origin ok')
      expect(client.text).not.toContain('101 Switching')
      expectNothingSmuggled(origin)
      const arrived = origin.heads().filter((h) => h.target === marker)
      expect(arrived).toHaveLength(1)
      expect(arrived[0]?.headers.has('upgrade')).toBe(false)
      expect(arrived[0]?.headers.has('http2-settings')).toBe(false)
    },
  )

  it('an upgrade to h2c with a body is refused', async () => {
    const marker = `/upgrade-body-${ingress.name.replace(/\W+/g, '-')}`
    const client = await ingress.open(port())
    client.write(
      `POST ${ingress.target(port(), marker)} HTTP/1.1\r\nHost: allowed.test:${port()}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello`,
    )
    client.write(H2_AFTER_SWITCH)
    await client.waitForClose(10_000)
    expect(client.text).toMatch(/^HTTP\/1\.1 403 /)
    expect(client.text).toContain('reason: upgrade-refused')
    expectNothingSmuggled(origin)
    expect(origin.heads().some((h) => h.target === marker)).toBe(false)
  })

  it('Upgrade without "Connection: upgrade" is no upgrade: forwarded without it, nothing spliced', async () => {
    const marker = `/no-upgrade-${ingress.name.replace(/\W+/g, '-')}`
    const client = await ingress.open(port())
    client.write(
      `GET ${ingress.target(port(), marker)} HTTP/1.1\r\nHost: allowed.test:${port()}\r\nUpgrade: h2c\r\n\r\n`,
    )
    await client.waitForText('origin ok')
    client.write(H2_AFTER_SWITCH)
    await client.waitForClose(10_000)
    expectNothingSmuggled(origin)
    const head = origin.heads().find((h) => h.target.endsWith(marker))
    expect(head?.headers.has('upgrade')).toBe(false)
  })

  it('a WebSocket upgrade without a Sec-WebSocket-Key is a 400', async () => {
    const client = await ingress.open(port())
    client.write(
      `GET ${ingress.target(port(), '/ws-no-key')} HTTP/1.1\r\nHost: allowed.test:${port()}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    )
    await client.waitForClose(10_000)
    expect(client.text).toMatch(/^HTTP\/1\.1 400 /)
    expect(origin.heads().some((h) => h.target.endsWith('/ws-no-key'))).toBe(false)
  })

  it.runIf(ingress.anyPort)(
    'an origin that answers 101 websocket without the accept key gets a 502 and nothing after',
    async () => {
      const client = await ingress.open(laxWebSocket.port)
      client.write(
        `GET ${ingress.target(laxWebSocket.port, '/lax-ws')} HTTP/1.1\r\nHost: allowed.test:${laxWebSocket.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${WS_KEY}\r\n`,
      )
      client.write(`GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n`)
      await client.waitForClose(10_000)
      expect(client.text).toMatch(/^HTTP\/1\.1 502 /)
      expect(laxWebSocket.text()).not.toMatch(/smuggled|evil\.test/)
    },
  )

  it('WebSocket is spliced once the origin switched to it (control)', async () => {
    const marker = `/ws-${ingress.name.replace(/\W+/g, '-')}`
    const client = await ingress.open(port())
    client.write(
      `GET ${ingress.target(port(), marker)} HTTP/1.1\r\nHost: allowed.test:${port()}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${WS_KEY}\r\n`,
    )
    await client.waitForText('\r\n\r\n')
    expect(client.text).toMatch(/^HTTP\/1\.1 101 /)
    client.write(`frame-bytes-after-101${marker}`)
    await origin.waitFor(() => origin.text().includes(`frame-bytes-after-101${marker}`))
    client.destroy()
    expectNothingSmuggled(origin)
  })

  it.runIf(ingress.anyPort).each([
    ['a WebSocket upgrade', `Upgrade: websocket\r\n${WS_KEY}`],
    ['an h2c upgrade (served without it)', 'Upgrade: h2c\r\n'],
  ])('an origin that answers %s with 101 h2c: 502, nothing after', async (_name, upgrade) => {
    const client = await ingress.open(switcher.port)
    client.write(
      `GET ${ingress.target(switcher.port, '/to-h2c')} HTTP/1.1\r\nHost: allowed.test:${switcher.port}\r\nConnection: Upgrade\r\n${upgrade}\r\n`,
    )
    client.write(H2_AFTER_SWITCH)
    await client.waitForClose(10_000)
    expect(client.text).toMatch(/^HTTP\/1\.1 502 /)
    expect(switcher.text()).not.toMatch(/PRI \* HTTP\/2|evil\.test/)
  })

  it.runIf(ingress.anyPort)(
    'an origin that answers a plain request with 101 h2c opens no splice',
    async () => {
      const client = await ingress.open(switcher.port)
      client.write(
        `GET ${ingress.target(switcher.port, '/plain-to-h2c')} HTTP/1.1\r\nHost: allowed.test:${switcher.port}\r\n\r\n`,
      )
      await client.waitForText('\r\n\r\n', 10_000)
      expect(client.text).toMatch(/^HTTP\/1\.1 502 /)
      if (!client.closed) client.write(H2_AFTER_SWITCH)
      await client.waitForClose(10_000)
      expect(switcher.text()).not.toMatch(/PRI \* HTTP\/2|evil\.test/)
    },
  )
})
