// Bypass class 3: endpoint rules and the paths (and methods) an origin may
// read in another way than the rule did. The host allows `GET /allowed/**` and
// denies `/allowed/private/**`. On every HTTP ingress (absolute form on the
// HTTP proxy, HTTP inside CONNECT and SOCKS tunnels, transparent HTTP), what a
// loopback origin receives is exactly what was decided: a fragment is never
// forwarded, and every spelling an origin may read as the denied subtree, or
// as another method, is refused before it reaches the origin. The readings
// themselves are tabled in test/unit/policy/path-readings.test.ts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RawClient, rawTunnel } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { PATH_CASES as CASES } from '../../helpers/path-cases.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let origin: RecordingOrigin
let proxy: TestProxy
let O: number

beforeAll(async () => {
  origin = await startRecordingOrigin()
  O = origin.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [
          { methods: [], path: '/allowed/private/**', action: 'deny' },
          { methods: ['GET'], path: '/allowed/**', action: 'allow' },
        ],
      },
    ],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'plain'],
    extra: { transparentPorts: { plain: O } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await origin?.close()
})

interface Ingress {
  readonly name: string
  open(): Promise<RawClient>
  target(path: string): string
}

const INGRESSES: readonly Ingress[] = [
  {
    name: 'HTTP proxy, absolute form',
    open: () => RawClient.connect(proxy.port('http')),
    target: (path) => `http://allowed.test:${O}${path}`,
  },
  {
    name: 'HTTP inside CONNECT',
    open: () => rawTunnel('connect', proxy.port('http'), 'allowed.test', O),
    target: (path) => path,
  },
  {
    name: 'HTTP inside SOCKS5',
    open: () => rawTunnel('socks', proxy.port('socks'), 'allowed.test', O),
    target: (path) => path,
  },
  {
    name: 'transparent HTTP',
    open: () => RawClient.connect(proxy.port('plain')),
    target: (path) => path,
  },
]

describe.each(INGRESSES.map((i) => [i.name, i] as const))('%s', (_name, ingress) => {
  it.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_case, c, i) => {
    const mark = `p${i}-${ingress.name.replace(/\W+/g, '-')}`
    const path = c.path.replace('MARK', mark)
    const client = await ingress.open()
    client.write(
      `GET ${ingress.target(path)} HTTP/1.1\r\nHost: allowed.test:${O}\r\n${c.headers ?? ''}Connection: close\r\n\r\n`,
    )
    await client.waitForClose(10_000)
    const arrived = origin.heads().filter((h) => h.target.includes(mark))
    if (c.forwarded === null) {
      expect(client.text).toMatch(/^HTTP\/1\.1 403 /)
      expect(client.text).toContain(`reason: ${c.reason}`)
      expect(arrived).toEqual([])
    } else {
      expect(client.text).toContain('origin ok')
      expect(arrived.map((h) => h.target)).toEqual([c.forwarded.replace('MARK', mark)])
    }
    // Nothing the origin got carries a fragment or an override.
    for (const head of origin.heads()) {
      expect(head.target).not.toContain('#')
      expect(
        [...head.headers.keys()].filter((k) =>
          /override|x-http-method|x-original-url|x-rewrite-url/.test(k),
        ),
      ).toEqual([])
    }
  })
})
