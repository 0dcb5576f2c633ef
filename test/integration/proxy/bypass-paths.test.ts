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

interface Case {
  readonly name: string
  /** The request target; MARK is replaced by a marker unique to the case and ingress. */
  readonly path: string
  readonly headers?: string
  /** What the origin must receive, or null when the request must not reach it. */
  readonly forwarded: string | null
  /** The reason in the refusal, when refused. */
  readonly reason?: string
}

const CASES: readonly Case[] = [
  { name: 'an allowed path (control)', path: '/allowed/x?m=MARK', forwarded: '/allowed/x?m=MARK' },
  {
    name: 'the denied subtree (control)',
    path: '/allowed/private/x?m=MARK',
    forwarded: null,
    reason: 'endpoint-denied',
  },
  {
    name: 'a fragment hiding ".." is cut off, never forwarded',
    path: '/allowed/x?m=MARK#/../../private/x',
    forwarded: '/allowed/x?m=MARK',
  },
  {
    name: 'a fragment in the path is cut off',
    path: '/allowed/MARK#/../private/x',
    forwarded: '/allowed/MARK',
  },
  {
    name: 'double percent-encoding',
    path: '/allowed/%252e%252e/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'overlong UTF-8 dots',
    path: '/allowed/%c0%ae%c0%ae/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'a trailing-dot segment',
    path: '/allowed/private./x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'a trailing encoded space',
    path: '/allowed/private%20/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'a trailing encoded tab',
    path: '/allowed/private%09/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'fullwidth dots',
    path: '/allowed/%ef%bc%8e%ef%bc%8e/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'encoded dots',
    path: '/allowed/%2e%2e/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'another case of the denied segment',
    path: '/allowed/Private/x?m=MARK',
    forwarded: null,
    reason: 'endpoint-denied',
  },
  {
    name: 'X-HTTP-Method-Override on an allowed GET',
    path: '/allowed/x?m=MARK',
    headers: 'X-HTTP-Method-Override: DELETE\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-HTTP-Method',
    path: '/allowed/x?m=MARK',
    headers: 'X-HTTP-Method: DELETE\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-Method-Override in lower case',
    path: '/allowed/x?m=MARK',
    headers: 'x-method-override: PUT\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-Original-URL naming the denied subtree',
    path: '/allowed/x?m=MARK',
    headers: 'X-Original-URL: /allowed/private/x\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-Rewrite-URL',
    path: '/allowed/x?m=MARK',
    headers: 'X-Rewrite-URL: /allowed/private/x\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'a _method query parameter',
    path: '/allowed/x?m=MARK&_method=DELETE',
    forwarded: null,
    reason: 'method-override',
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
