// The sandbox pipelines requests on one connection to an allowed origin that
// answers slowly (or never), and never reads the answers. Before this was
// bounded, every request the client wrote was parsed, kept and sent upstream at
// once (up to the upstream pool's 64 connections, the rest queued in the
// proxy): 14 MB of small pipelined requests made a proxy hold 800 MB, and a
// sidecar has 256 MB. Now a connection's requests go upstream one at a time,
// in order (HTTP/1.1 answers them in order anyway), and a connection on which
// too many requests wait is closed.
//
// The origin here answers only when the test says so, so "one at a time" is
// checked by events, never by time: when request n arrives, request n+1 has not.

import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseResponses, RawClient, rawTunnel } from '../../helpers/clients.js'
import { dials, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { MAX_WAITING_REQUESTS } from '../../../src/proxy/request-turn.js'

/** An origin that records request heads (no bodies) and answers only when told to. */
interface HeldOrigin {
  readonly port: number
  /** Request targets received so far, in order. */
  readonly targets: string[]
  /** Answers the oldest unanswered request with a 200 whose body is its target. */
  answerOne(): void
  waitForTargets(n: number): Promise<void>
  close(): Promise<void>
}

async function startHeldOrigin(): Promise<HeldOrigin> {
  const targets: string[] = []
  const waiting: { socket: net.Socket; target: string }[] = []
  const waiters = new Set<() => void>()
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let pending = ''
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const target = pending.slice(0, end).split(' ')[1] ?? ''
        pending = pending.slice(end + 4)
        targets.push(target)
        waiting.push({ socket, target })
      }
      for (const w of [...waiters]) w()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    targets,
    answerOne() {
      const next = waiting.shift()
      if (!next) throw new Error('no request waits for an answer')
      next.socket.write(
        `HTTP/1.1 200 OK\r\nContent-Length: ${next.target.length}\r\n\r\n${next.target}`,
      )
    },
    waitForTargets: (n) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (targets.length < n) return
          waiters.delete(check)
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`origin: ${targets.length} of ${n} requests arrived`))
        }, 20_000)
        waiters.add(check)
        check()
      }),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

let origin: HeldOrigin
let proxy: TestProxy
let O: number

beforeAll(async () => {
  origin = await startHeldOrigin()
  O = origin.port
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`, `a.test:${O}`, `b.test:${O}`, `other.allowed.test:${O}`],
    resolve: loopbackNames(),
    listeners: ['http', 'plain'],
    extra: { transparentPorts: { plain: O } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await origin?.close()
})

// Each on a host of its own, so that each starts with an upstream pool of its own.
const INGRESSES = [
  {
    name: 'absolute form on the HTTP proxy port',
    open: () => RawClient.connect(proxy.port('http')),
    request: (path: string) =>
      `GET http://a.test:${O}${path} HTTP/1.1\r\nHost: a.test:${O}\r\n\r\n`,
  },
  {
    name: 'the transparent HTTP listener',
    open: () => RawClient.connect(proxy.port('plain')),
    request: (path: string) => `GET ${path} HTTP/1.1\r\nHost: b.test:${O}\r\n\r\n`,
  },
  {
    name: 'plain HTTP in a CONNECT tunnel',
    open: () => rawTunnel('connect', proxy.port('http'), 'other.allowed.test', O),
    request: (path: string) => `GET ${path} HTTP/1.1\r\nHost: other.allowed.test:${O}\r\n\r\n`,
  },
] as const

describe.each(INGRESSES)('pipelined requests via $name', (ingress) => {
  it('go upstream one at a time, each after the answer to the one before', async () => {
    const tag = ingress.name.split(' ')[0] as string
    const paths = [1, 2, 3, 4, 5].map((i) => `/one-at-a-time-${tag}-${i}`)
    const before = origin.targets.length
    const dialled = dials().length
    const dialsToOrigin = (): number =>
      dials()
        .slice(dialled)
        .filter((d) => d.port === O).length
    const client = await ingress.open()
    client.write(paths.map((p) => ingress.request(p)).join(''))
    for (let i = 1; i <= paths.length; i++) {
      await origin.waitForTargets(before + i)
      expect(origin.targets.slice(before)).toEqual(paths.slice(0, i))
      // Sent at once, all five would have been dialled (the pool has a connection per
      // request in flight) before the first one's bytes could arrive; one at a time,
      // each waits for the answer to the one before, and at most one dial per request.
      if (i === 1) expect(dialsToOrigin()).toBe(1)
      else expect(dialsToOrigin()).toBeLessThanOrEqual(i)
      origin.answerOne()
    }
    await client.waitFor((d) => parseResponses(d).length === paths.length)
    expect(parseResponses(client.data).map((r) => r.body)).toEqual(paths)
    client.destroy()
  })
})

describe('a client that pipelines far more requests than the origin answers', () => {
  it('is cut off: the proxy keeps a bounded number of its requests, and sends one', async () => {
    const padding = 'x'.repeat(1000)
    const total = 4000 // about 4 MB
    const before = origin.targets.length
    const since = proxy.mark()
    const client = await RawClient.connect(proxy.port('http'))
    const one = `GET http://allowed.test:${O}/flood HTTP/1.1\r\nHost: allowed.test:${O}\r\nX-Pad: ${padding}\r\n\r\n`
    client.write(one.repeat(total))
    await client.waitForClose()
    expect(client.data.length).toBe(0) // the first request was never answered
    expect(origin.targets.length - before).toBeLessThanOrEqual(1)
    // Every request the proxy read and approved is logged as its connection closes.
    const events = await proxy.waitForEvents(1, (e) => e.path === '/flood', { since })
    expect(events[0]).toMatchObject({ action: 'allow' })
    const read = proxy.events.slice(since).filter((e) => e.path === '/flood').length
    expect(read).toBeLessThanOrEqual(MAX_WAITING_REQUESTS)
  })
})
