// Attack (second round): a request budget dodged by starting many connections
// or requests at once. A budget's room used to be checked when an exchange was
// admitted, but its request charged only once it started to flow (after the
// dial for a tunnel, after the 101 for a WebSocket, after undici loaded for
// the first plain-HTTP requests): every exchange admitted in between passed
// the same check. The ground truth is what the stand-ins accepted.

import http from 'node:http'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpViaProxy, openTunnel } from '../../helpers/clients.js'
import { clientHello } from '../../helpers/attacks.js'
import { startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const LIMIT = 2
const CONCURRENT = 8

/** A TCP stand-in that counts the connections it accepted (and, for HTTP, the requests). */
interface Sink {
  readonly port: number
  readonly accepted: number
  requests: number
  /** Resolves once at least `n` connections were accepted. */
  acceptedAtLeast(n: number): Promise<void>
  close(): Promise<void>
}

async function newSink(server: net.Server): Promise<Sink> {
  const sockets = new Set<net.Socket>()
  const waiters = new Set<() => void>()
  let accepted = 0
  server.on('connection', (socket: net.Socket) => {
    socket.on('error', () => undefined)
    sockets.add(socket)
    accepted++
    for (const w of [...waiters]) w()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted
    },
    requests: 0,
    acceptedAtLeast: (n) =>
      new Promise((resolve) => {
        const check = (): void => {
          if (accepted < n) return
          waiters.delete(check)
          resolve()
        }
        waiters.add(check)
        check()
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

let tcpSink: Sink
let httpSink: Sink
let proxy: TestProxy

beforeAll(async () => {
  const raw = net.createServer((socket) => socket.resume())
  tcpSink = await newSink(raw)
  const web = http.createServer((req, res) => {
    httpSink.requests++
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  httpSink = await newSink(web)
  proxy = await startTestProxy({
    allow: [`race.test:${tcpSink.port}`, `plain.test:${httpSink.port}`],
    resolve: { 'race.test': '127.0.0.1', 'plain.test': '127.0.0.1' },
    policy: {
      limits: [
        { pattern: `race.test:${tcpSink.port}`, requests: LIMIT, from: 'test' },
        { pattern: `plain.test:${httpSink.port}`, requests: LIMIT, from: 'test' },
      ],
    },
    listeners: ['http'],
  })
})

afterAll(async () => {
  await Promise.all([proxy?.close(), tcpSink?.close(), httpSink?.close()])
})

describe('a request budget is not dodged by starting many at once', () => {
  it('plain HTTP: concurrent requests on their own connections, the first the proxy serves', async () => {
    const answers = await Promise.all(
      Array.from({ length: CONCURRENT }, () =>
        httpViaProxy(proxy.port('http'), `http://plain.test:${httpSink.port}/`),
      ),
    )
    const statuses = answers.map((a) => a.status).sort()
    expect(statuses).toEqual([
      ...Array<number>(LIMIT).fill(200),
      ...Array<number>(CONCURRENT - LIMIT).fill(429),
    ])
    expect(httpSink.requests).toBe(LIMIT)
  })

  it('CONNECT: concurrent tunnels get LIMIT 200s, the rest 429, and the origin sees LIMIT connections', async () => {
    const tunnels = await Promise.all(
      Array.from({ length: CONCURRENT }, () =>
        openTunnel(proxy.port('http'), `race.test:${tcpSink.port}`),
      ),
    )
    const statuses = tunnels.map((t) => t.status).sort()
    const opened = tunnels.filter((t) => t.status === 200)
    // A tunnel is dialled once its first bytes are decided: a ClientHello for its host.
    const hello = await clientHello('race.test')
    for (const t of opened) t.socket.write(hello)
    await tcpSink.acceptedAtLeast(opened.length)
    expect(statuses).toEqual([
      ...Array<number>(LIMIT).fill(200),
      ...Array<number>(CONCURRENT - LIMIT).fill(429),
    ])
    expect(tcpSink.accepted).toBe(LIMIT)
    for (const t of tunnels) t.socket.destroy()
  })
})
