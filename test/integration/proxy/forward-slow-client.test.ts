// A response that ends its connection (Connection: close, then FIN) to a
// client that reads slowly: the forwarder must deliver all of it and live on.
// Paused for backpressure when the FIN came, undici 7's parser left this
// response unfinished here (the client's connection was reset), and over an
// intercepted TLS upstream threw an uncatchable assertion that ended the proxy
// (seen in bench:proxy; nodejs/undici#5360). The forwarder does not pause
// such responses. The client stops reading until the origin has closed its
// side (an event, not a delay), then reads everything.

import net from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const BODY_BYTES = 8 * 1024 * 1024

let origin: net.Server
let proxy: TestProxy
let originClosed: Promise<void>

beforeAll(async () => {
  let closed: () => void = () => undefined
  originClosed = new Promise((resolve) => (closed = resolve))
  origin = net.createServer((socket) => {
    socket.once('data', () => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY_BYTES}\r\nConnection: close\r\n\r\n`)
      socket.end(Buffer.alloc(BODY_BYTES, 0x61), () => undefined)
      socket.once('close', () => closed())
    })
  })
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  const port = (origin.address() as net.AddressInfo).port
  proxy = await startTestProxy({ allow: [`allowed.test:${port}`], resolve: loopbackNames() })
})

afterAll(async () => {
  await proxy?.close()
  await new Promise((resolve) => origin?.close(resolve))
})

it('delivers a closing response to a client that reads only after the origin has closed', async () => {
  const port = (origin.address() as net.AddressInfo).port
  const client = net.connect({ host: '127.0.0.1', port: proxy.port('http') })
  await new Promise((resolve) => client.once('connect', resolve))
  client.pause()
  client.write(`GET http://allowed.test:${port}/big HTTP/1.1\r\nHost: allowed.test:${port}\r\n\r\n`)
  await originClosed
  let received = 0
  const done = new Promise<void>((resolve) => {
    client.on('data', (c: Buffer) => {
      received += c.length
      if (received >= BODY_BYTES) resolve()
    })
  })
  client.resume()
  await done
  client.destroy()
  expect(received).toBeGreaterThanOrEqual(BODY_BYTES)
  // The proxy lived to log the request with its status.
  const event = await proxy.waitForEvent((e) => e.path === '/big')
  expect(event.status).toBe(200)
})
