// A large response that ends with its connection (no length, Connection:
// close), forwarded to a client that does not read: the proxy must hold it by
// reading no further from the origin, not buffer it, and then deliver all of
// it when the client reads. Over plain HTTP and over an intercepted TLS
// upstream (HTTP/1.1 inside the tunnel, HTTP/1.1 to the origin); and a
// kept-alive response, whose connection must serve the next request after.
//
// History: pausing undici 7's parser for such a response broke it when the FIN
// came while paused (an uncatchable assertion over TLS, a reset over plain
// HTTP: nodejs/undici#5360), so the forwarder stopped pausing it and buffered
// the whole response for a slow client (277 MiB RSS for 128 MiB). It is now held
// by its connection's gate (src/proxy/upstream-gate.ts).
//
// What is measured is the bytes the origin's kernel accepted while the client
// read nothing, never time: the client starts reading once the origin has
// finished (the old behaviour: the test fails) or is stuck, waiting for a drain
// that did not come while the proxy answered two rounds of other requests.

import net from 'node:net'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority } from '../../../src/tls/ca.js'
import { testCerts } from '../../helpers/certs.js'
import { interceptedTls } from '../../helpers/intercepted.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const MiB = 1024 * 1024
const BODY_BYTES = 128 * MiB
/**
 * What may be in flight when the client reads nothing: the kernel's socket buffers
 * on both sides of the proxy (here up to 4 MiB to send and 32 MiB to receive,
 * autotuned) and the proxy's own stream buffers. Before the gate: all 128 MiB.
 */
const BOUND = 48 * MiB
const CHUNK = Buffer.alloc(MiB, 0x61)

/**
 * An origin that answers with BODY_BYTES, framed by closing its connection, or
 * kept alive (Content-Length), when it answers later requests on the same
 * connection with a short body.
 */
interface Origin {
  readonly server: net.Server
  /** Bytes of the body the origin's kernel has accepted. */
  accepted: number
  finished: boolean
  /** Waiting for a drain that has not come. */
  stalled: boolean
  connections: number
}

function newOrigin(): Origin {
  return { accepted: 0, finished: false, stalled: false, connections: 0 } as unknown as Origin
}

function serveResponses(origin: Origin, socket: net.Socket, keptAlive = false): void {
  origin.connections++
  socket.on('error', () => undefined)
  let requests = 0
  socket.on('data', () => {
    if (requests++ > 0) return void socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    const framing = keptAlive ? `Content-Length: ${BODY_BYTES}` : 'Connection: close'
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n${framing}\r\n\r\n`)
    let queued = 0
    const pump = (): void => {
      origin.stalled = false
      while (queued < BODY_BYTES) {
        queued += CHUNK.length
        const last = queued === BODY_BYTES
        const more = socket.write(CHUNK, () => {
          origin.accepted += CHUNK.length
          if (last && keptAlive) origin.finished = true
        })
        if (!more) {
          origin.stalled = true
          return void socket.once('drain', pump)
        }
      }
      if (!keptAlive) socket.end(() => (origin.finished = true))
    }
    pump()
  })
}

function plainOrigin(keptAlive = false): Origin {
  const origin = newOrigin()
  ;(origin as { server: net.Server }).server = net.createServer((s) =>
    serveResponses(origin, s, keptAlive),
  )
  return origin
}

async function tlsOrigin(): Promise<Origin> {
  const certs = await testCerts()
  const origin = newOrigin()
  ;(origin as { server: net.Server }).server = tls.createServer(
    { key: certs.key, cert: certs.cert, ALPNProtocols: ['http/1.1'] },
    (s) => serveResponses(origin, s),
  )
  return origin
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

/** A request the proxy answers itself (refused): its event loop has turned over. */
async function probe(proxy: TestProxy): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port: proxy.port('http') })
  socket.on('error', () => undefined)
  socket.end('GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n')
  socket.resume()
  await new Promise((resolve) => socket.once('close', resolve))
}

/**
 * Resolves once the origin has finished, or is stuck: stalled, with nothing more out,
 * across two rounds of probes in a row.
 */
async function originFinishedOrStuck(origin: Origin, proxy: TestProxy): Promise<void> {
  for (let still = 0; !origin.finished && still < 2;) {
    const before = origin.accepted
    for (let i = 0; i < 5; i++) await probe(proxy)
    still = origin.stalled && origin.accepted === before ? still + 1 : 0
  }
}

/**
 * Reads a response to its end, counting the body's bytes. The requests are HTTP/1.0:
 * the proxy sends the body as it is (not chunked) and closes the connection after it.
 */
function readBody(client: net.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0)
    let body = -1
    client.on('data', (chunk: Buffer) => {
      if (body >= 0) return void (body += chunk.length)
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      if (!/^HTTP\/1\.[01] 200 /.test(head.toString('latin1', 0, 13)))
        return reject(new Error(`answered ${head.subarray(0, 40).toString()}`))
      body = head.length - end - 4
    })
    client.once('error', reject)
    client.once('close', () => resolve(body))
  })
}

async function holdsThenDelivers(
  origin: Origin,
  proxy: TestProxy,
  client: net.Socket,
  request: string,
): Promise<void> {
  client.pause()
  client.write(request)
  await originFinishedOrStuck(origin, proxy)
  // The client has read nothing: what the origin got rid of is held by the proxy or the kernel.
  expect(origin.accepted).toBeLessThanOrEqual(BOUND)
  const reading = readBody(client)
  client.resume()
  expect(await reading).toBe(BODY_BYTES)
  expect(origin.finished).toBe(true)
}

describe('a large response to a client that does not read', () => {
  let proxy: TestProxy
  let plain: Origin
  let secure: Origin
  let kept: Origin
  let plainPort: number
  let keptPort: number
  let securePort: number
  let sandboxCa: string

  beforeAll(async () => {
    plain = plainOrigin()
    secure = await tlsOrigin()
    kept = plainOrigin(true)
    plainPort = await listen(plain.server)
    keptPort = await listen(kept.server)
    securePort = await listen(secure.server)
    const certs = await testCerts()
    const ca = await createCertificateAuthority({ commonName: 'forward-slow-client sandbox' })
    sandboxCa = ca.cert
    proxy = await startTestProxy({
      allow: [
        `allowed.test:${plainPort}`,
        `allowed.test:${securePort}`,
        `allowed.test:${keptPort}`,
      ],
      // Endpoint rules make the proxy intercept the host's TLS.
      endpoints: [
        {
          host: 'allowed.test',
          from: 'test',
          rules: [{ methods: ['GET'], path: '/**', action: 'allow' }],
        },
      ],
      resolve: loopbackNames(),
      listeners: ['http'],
      extra: { interception: { ca, upstreamCa: certs.ca.toString() } },
    })
  })

  afterAll(async () => {
    await proxy?.close()
    for (const origin of [plain, secure, kept]) await new Promise((r) => origin?.server.close(r))
  })

  it('is held by the proxy over plain HTTP, then delivered whole', async () => {
    const client = net.connect({ host: '127.0.0.1', port: proxy.port('http') })
    await new Promise((resolve) => client.once('connect', resolve))
    const host = `allowed.test:${plainPort}`
    await holdsThenDelivers(
      plain,
      proxy,
      client,
      `GET http://${host}/big HTTP/1.0\r\nHost: ${host}\r\n\r\n`,
    )
    const event = await proxy.waitForEvent((e) => e.path === '/big' && e.port === plainPort)
    expect(event.status).toBe(200)
  })

  it('is held by the proxy over an intercepted TLS upstream, then delivered whole', async () => {
    const client = await interceptedTls({
      via: 'connect',
      proxyPort: proxy.port('http'),
      host: 'allowed.test',
      port: securePort,
      ca: sandboxCa,
    })
    const host = `allowed.test:${securePort}`
    await holdsThenDelivers(secure, proxy, client, `GET /big HTTP/1.0\r\nHost: ${host}\r\n\r\n`)
    const event = await proxy.waitForEvent((e) => e.path === '/big' && e.port === securePort)
    expect(event.status).toBe(200)
  })

  it('holds a kept-alive response the same way, and its connection serves the next request', async () => {
    const host = `allowed.test:${keptPort}`
    const first = net.connect({ host: '127.0.0.1', port: proxy.port('http') })
    await new Promise((resolve) => first.once('connect', resolve))
    await holdsThenDelivers(
      kept,
      proxy,
      first,
      `GET http://${host}/big HTTP/1.0\r\nHost: ${host}\r\n\r\n`,
    )
    // The gate let go of the connection when the response ended: it answers the next request.
    const second = net.connect({ host: '127.0.0.1', port: proxy.port('http') })
    const reading = readBody(second)
    second.write(`GET http://${host}/small HTTP/1.0\r\nHost: ${host}\r\n\r\n`)
    expect(await reading).toBe(2)
    expect(kept.connections).toBe(1)
  })
})
