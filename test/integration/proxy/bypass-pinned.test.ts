// Bypass class 4: a client that gives up must not leave an upstream connection
// behind. An abandoned plain-HTTP request used to keep its pooled upstream
// connection waiting for a reader that was gone (until the 15-minute body
// timeout); 64 of them filled the origin's pool and plain HTTP to it stopped
// for the whole sandbox. And partial request heads must be dropped at their
// deadline, not up to 30 s later. Checked at the origin and in the kernel's
// socket table, never through the proxy's internals.

import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpViaProxy, RawClient, rawTunnel } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'
import { socketsInState } from '../../helpers/sockets.js'

let origin: RecordingOrigin
let proxy: TestProxy
let O: number

beforeAll(async () => {
  // The origin closes after each response: a proxy that stops reading then leaves its
  // end in CLOSE_WAIT, which the kernel's table shows.
  origin = await startRecordingOrigin({
    close: true,
    body: Buffer.alloc(64 * 1024, 'x'),
    idleMs: 500,
  })
  O = origin.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'plain'],
    timeouts: { headMs: 1000 },
    extra: { transparentPorts: { plain: O } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await origin?.close()
})

/** Polls `pred` until it holds; fails with `describe()` after a generous safety net. */
async function eventually(pred: () => boolean, describe: () => string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`still not so after ${timeoutMs} ms: ${describe()}`)
    await sleep(50)
  }
}

const N = 100
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

describe('abandoned plain-HTTP requests pin no upstream connection', () => {
  it(`requests abandoned in every way (${N} of most) leave nothing open, and plain HTTP still works`, async () => {
    const P = proxy.port('http')
    const request = (path: string): string =>
      `GET http://allowed.test:${O}${path} HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\n`
    // A valid request, then a malformed one on the same connection (400 and a close).
    await Promise.all(
      range(N).map(async (i) => {
        const client = await RawClient.connect(P)
        client.write(`${request(`/pipelined-${i}`)}NOT A REQUEST\r\n\r\n`)
        await client.waitForClose(30_000)
      }),
    )
    // A valid request, then the client is gone before any answer.
    await Promise.all(
      range(N).map(async (i) => {
        const client = await RawClient.connect(P)
        await new Promise<void>((resolve) =>
          client.socket.write(request(`/vanished-${i}`), () => {
            client.destroy()
            resolve()
          }),
        )
      }),
    )
    // A valid request whose answer has begun, and a client that stops reading, then leaves.
    // Fewer than the 64 connections of a pool: a client that is there but does not read
    // rightly holds its upstream connection until it leaves.
    const stopped = 48
    const before = origin.heads().length
    const readers = await Promise.all(
      range(stopped).map(async (i) => {
        const socket = net.connect({ host: '127.0.0.1', port: P })
        socket.on('error', () => undefined)
        await new Promise((resolve) => socket.once('connect', resolve))
        socket.pause()
        socket.write(request(`/stopped-reading-${i}`))
        return socket
      }),
    )
    await origin.waitFor(() => origin.heads().length >= before + stopped, 30_000)
    for (const socket of readers) socket.destroy()
    await eventually(
      () => origin.open() === 0 && socketsInState(O, 'CLOSE_WAIT').length === 0,
      () =>
        `${origin.open()} origin connections open, CLOSE_WAIT: ${JSON.stringify(socketsInState(O, 'CLOSE_WAIT'))}`,
    )
    // Plain HTTP to that origin works right after, for everyone.
    const results = await Promise.all(
      range(8).map((i) => httpViaProxy(P, `http://allowed.test:${O}/after-${i}`)),
    )
    for (const r of results) expect(r.status).toBe(200)
    await eventually(
      () => origin.open() === 0 && socketsInState(O, 'CLOSE_WAIT').length === 0,
      () => `${origin.open()} origin connections open after the control requests`,
    )
  }, 120_000)
})

describe('request heads are dropped at their deadline (headMs, 1 s here)', () => {
  it.each([
    [
      'on the HTTP proxy port',
      () => RawClient.connect(proxy.port('http')),
      'GET http://allowed.test/ HTTP/1.1\r\nHost: all',
    ],
    [
      'a CONNECT head on the HTTP proxy port',
      () => RawClient.connect(proxy.port('http')),
      `CONNECT allowed.test:${0} HTTP/1.1\r\n`,
    ],
    [
      'on the transparent HTTP port',
      () => RawClient.connect(proxy.port('plain')),
      'GET / HTTP/1.1\r\nHost: all',
    ],
    [
      'inside a CONNECT tunnel',
      () => rawTunnel('connect', proxy.port('http'), 'allowed.test', O),
      'GET / HTTP/1.1\r\nHost: all',
    ],
    [
      'inside a SOCKS tunnel',
      () => rawTunnel('socks', proxy.port('socks'), 'allowed.test', O),
      'GET / HTTP/1.1\r\nHost: all',
    ],
  ] as const)('%s', async (_name, open, partial) => {
    const client = await open()
    client.write(partial)
    // Node checked its head deadline every 30 s by default; the safety net is far below that.
    await client.waitForClose(10_000)
  })

  it('a second head on a kept-alive connection has its own deadline', async () => {
    const client = await RawClient.connect(proxy.port('plain'))
    client.write(`GET /first HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\n`)
    await client.waitForText('xxxx')
    client.write('GET /second HTTP/1.1\r\nHost: all')
    await client.waitForClose(10_000)
  })
})
