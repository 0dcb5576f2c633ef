// Bypass class 1: bytes a strict sniffer would not call HTTP, but an origin
// would read as a request for another host. Through a CONNECT or SOCKS tunnel
// whose rule names its port (without tcp:), on the transparent HTTP listener,
// and on the transparent TLS listener, each payload is either refused or read,
// checked and written again by the proxy; never spliced. The checks are at the
// socket level: what the client got back, and what a loopback origin received
// (every head it got is a clean request for the allowed host, and no byte of
// another host's name or of HTTP/2 ever arrived).

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import { RawClient, rawTunnel, tlsGet } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let certs: TestCerts
let origin: RecordingOrigin // plain HTTP, on an explicitly allowed port
let tlsOrigin: RecordingOrigin
let proxy: TestProxy
let O: number
let OT: number

beforeAll(async () => {
  certs = await testCerts()
  origin = await startRecordingOrigin()
  tlsOrigin = await startRecordingOrigin({ tls: certs })
  O = origin.port
  OT = tlsOrigin.port
  proxy = await startTestProxy({
    // Ports named explicitly, without tcp:: TLS or HTTP the proxy reads, nothing else.
    allow: [`allowed.test:${O}`, `allowed.test:${OT}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'plain'],
    extra: { transparentPorts: { tls: OT, plain: O } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([origin?.close(), tlsOrigin?.close()])
})

/** The HTTP/2 connection preface, an empty SETTINGS frame and a HEADERS frame for `authority`. */
function h2PriorKnowledge(authority: string, path: string): Buffer {
  const literal = (index: number, value: string): Buffer =>
    Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value, 'latin1')])
  // HPACK: :method GET (static 2), :scheme http (static 6), then literals without indexing.
  const block = Buffer.concat([Buffer.from([0x82, 0x86]), literal(4, path), literal(1, authority)])
  const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
    const header = Buffer.alloc(9)
    header.writeUIntBE(payload.length, 0, 3)
    header[3] = type
    header[4] = flags
    header.writeUInt32BE(stream, 5)
    return Buffer.concat([header, payload])
  }
  return Buffer.concat([
    Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
    frame(0x4, 0, 0, Buffer.alloc(0)),
    frame(0x1, 0x5, 1, block), // END_STREAM | END_HEADERS
  ])
}

type Outcome = 'refused' | 'served'

interface Case {
  readonly name: string
  /** What to send, given the allowed authority and this case's marker path. */
  readonly bytes: (allowed: string, marker: string) => string | Buffer
  /** Inside a tunnel, where the tunnel names the target. */
  readonly tunnel: Outcome
  /** On the transparent HTTP listener, where only the request names the target. */
  readonly transparent: Outcome
}

const EVIL = 'evil.test'

const CASES: readonly Case[] = [
  {
    name: 'leading empty line, Host of another host',
    bytes: (_a, m) => `\r\nGET ${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'leading empty lines, Host of the allowed host (read leniently, written again)',
    bytes: (a, m) => `\r\n\r\nGET ${m} HTTP/1.1\r\nHost: ${a}\r\nConnection: close\r\n\r\n`,
    tunnel: 'served',
    transparent: 'served',
  },
  {
    name: 'leading bare LFs',
    bytes: (_a, m) => `\n\nGET ${m} HTTP/1.1\nHost: ${EVIL}\n\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'leading space',
    bytes: (_a, m) => ` GET ${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'leading tab',
    bytes: (_a, m) => `\tGET ${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'bare LF line endings',
    bytes: (_a, m) => `GET ${m} HTTP/1.1\nHost: ${EVIL}\n\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'bare LF line endings, Host of the allowed host',
    bytes: (a, m) => `GET ${m} HTTP/1.1\nHost: ${a}\nConnection: close\n\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'bare CR line endings',
    bytes: (_a, m) => `GET ${m} HTTP/1.1\rHost: ${EVIL}\r\r`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a method outside any fixed list (QUERY), Host of another host',
    bytes: (_a, m) => `QUERY ${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'QUERY for the allowed host (read, written again)',
    bytes: (a, m) => `QUERY ${m} HTTP/1.1\r\nHost: ${a}\r\nConnection: close\r\n\r\n`,
    tunnel: 'served',
    transparent: 'served',
  },
  {
    name: 'a lower-case method',
    bytes: (_a, m) => `get ${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a made-up method',
    bytes: (_a, m) => `FROB ${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'absolute form naming another host, Host of the allowed one',
    bytes: (a, m) => `GET http://${EVIL}${m} HTTP/1.1\r\nHost: ${a}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'absolute form in upper case naming another host',
    bytes: (a, m) => `GET HTTP://${EVIL.toUpperCase()}${m} HTTP/1.1\r\nHost: ${a}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'absolute form naming the allowed host, Host of another one',
    bytes: (a, m) => `GET http://${a}${m} HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'absolute form with userinfo',
    bytes: (a, m) => `GET http://${a}@${EVIL}${m} HTTP/1.1\r\nHost: ${a}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'HTTP/1.0 without Host (the proxy names the tunnel target)',
    bytes: (_a, m) => `GET ${m} HTTP/1.0\r\n\r\n`,
    tunnel: 'served',
    transparent: 'refused',
  },
  {
    name: 'HTTP/1.1 without Host',
    bytes: (_a, m) => `GET ${m} HTTP/1.1\r\nConnection: close\r\n\r\n`,
    tunnel: 'served',
    transparent: 'refused',
  },
  {
    name: 'HTTP/1.0 with the Host of another host',
    bytes: (_a, m) => `GET ${m} HTTP/1.0\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'HTTP/2 prior knowledge with :authority of another host',
    bytes: (_a, m) => h2PriorKnowledge(EVIL, m),
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'the HTTP/2 preface alone',
    bytes: () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a folded Host header',
    bytes: (a, m) => `GET ${m} HTTP/1.1\r\nHost: ${a}\r\n ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'two Host headers',
    bytes: (a, m) => `GET ${m} HTTP/1.1\r\nHost: ${a}\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a Host list',
    bytes: (a, m) => `GET ${m} HTTP/1.1\r\nHost: ${a}, ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a space before the colon of Host',
    bytes: (a, m) => `GET ${m} HTTP/1.1\r\nHost : ${EVIL}\r\nHost: ${a}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'Content-Length and Transfer-Encoding smuggling a second request',
    bytes: (a, m) =>
      `POST ${m} HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET ${m}-2 HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'an allowed request, then one pipelined for another host',
    bytes: (a, m) =>
      `GET ${m} HTTP/1.1\r\nHost: ${a}\r\n\r\nGET ${m}-evil HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'served',
    transparent: 'served',
  },
  {
    name: 'CONNECT to another host inside the tunnel',
    bytes: () => `CONNECT ${EVIL}:443 HTTP/1.1\r\nHost: ${EVIL}:443\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'an SSH client banner',
    bytes: () => 'SSH-2.0-OpenSSH_9.6\r\n',
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a NUL in the request line',
    bytes: (_a, m) => `GET ${m}\u0000 HTTP/1.1\r\nHost: ${EVIL}\r\n\r\n`,
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'binary that is not TLS',
    bytes: () => Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10]),
    tunnel: 'refused',
    transparent: 'refused',
  },
  {
    name: 'a TLS record header with garbage',
    bytes: () => Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0xff]),
    tunnel: 'refused',
    transparent: 'refused',
  },
]

const markerOf = (ingress: string, index: number): string => `/bypass-${ingress}-${index}`

/** Sends one case's bytes on a client, waits for the proxy to end the connection. */
async function run(client: RawClient, bytes: string | Buffer): Promise<string> {
  client.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes)
  await client.waitForClose(10_000)
  return client.text
}

/** What the client got says refused or served; the origin agrees, and only ever saw the allowed host. */
function expectOutcome(
  answer: string,
  outcome: Outcome,
  marker: string,
  allowedAuthority: string,
): void {
  const heads = origin.heads()
  for (const head of heads) expect(head.headers.get('host')).toEqual([allowedAuthority])
  expect(origin.text()).not.toMatch(/evil\.test|PRI \* HTTP\/2/i)
  const arrived = heads.filter((h) => h.target === marker || h.target.startsWith(`${marker}-`))
  if (outcome === 'served') {
    expect(answer).toContain('origin ok')
    expect(arrived.map((h) => h.target)).toEqual([marker])
  } else {
    expect(answer).not.toContain('origin ok')
    expect(arrived).toEqual([])
  }
}

describe.each(['connect', 'socks'] as const)('inside a %s tunnel on an explicit port', (via) => {
  it.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const marker = markerOf(via, i)
    const allowed = `allowed.test:${O}`
    const client = await rawTunnel(
      via,
      proxy.port(via === 'connect' ? 'http' : 'socks'),
      'allowed.test',
      O,
    )
    const answer = await run(client, c.bytes(allowed, marker))
    expectOutcome(answer, c.tunnel, marker, allowed)
  })

  it('a plain request through the same kind of tunnel reaches the origin (control)', async () => {
    const client = await rawTunnel(
      via,
      proxy.port(via === 'connect' ? 'http' : 'socks'),
      'allowed.test',
      O,
    )
    const marker = `/control-${via}`
    const answer = await run(
      client,
      `GET ${marker} HTTP/1.1\r\nHost: allowed.test:${O}\r\nConnection: close\r\n\r\n`,
    )
    expectOutcome(answer, 'served', marker, `allowed.test:${O}`)
  })

  it('TLS through the same kind of tunnel reaches the TLS origin (control)', async () => {
    const client = await rawTunnel(
      via,
      proxy.port(via === 'connect' ? 'http' : 'socks'),
      'allowed.test',
      OT,
    )
    const res = await tlsGet(client.socket, {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: 'allowed.test',
      path: `/tls-control-${via}`,
    })
    expect(res.body).toBe('origin ok\n')
    expect(tlsOrigin.text()).toContain(`GET /tls-control-${via} HTTP/1.1`)
  })
})

describe('on the transparent HTTP listener', () => {
  it.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const marker = markerOf('plain', i)
    // The listener decides for the origin's port, so the Host names it with that port.
    const allowed = `allowed.test:${O}`
    const client = await RawClient.connect(proxy.port('plain'))
    const answer = await run(client, c.bytes(allowed, marker))
    expectOutcome(answer, c.transparent, marker, allowed)
  })
})

describe('on the transparent TLS listener: TLS only', () => {
  it.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const before = tlsOrigin.connections()
    const client = await RawClient.connect(proxy.port('tls'))
    const answer = await run(client, c.bytes(`allowed.test:${OT}`, markerOf('tls', i)))
    expect(answer).not.toContain('origin ok')
    // Nothing reached the TLS origin: not a connection, not a byte.
    expect(tlsOrigin.connections()).toBe(before)
  })

  it('TLS naming the allowed host reaches the TLS origin (control)', async () => {
    const client = await RawClient.connect(proxy.port('tls'))
    const res = await tlsGet(client.socket, {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: 'allowed.test',
      path: '/tls-control-transparent',
    })
    expect(res.body).toBe('origin ok\n')
    expect(tlsOrigin.text()).toContain('GET /tls-control-transparent HTTP/1.1')
  })
})
