// Budgets on the data path, against stand-ins that count what they received:
// an upload past its budget is cut (plain HTTP through curl, and a spliced TLS
// tunnel), the next request or tunnel is refused (429, SOCKS 0x02), the
// ledger's usage matches what the stand-in received to within one TCP window,
// and traffic under its budget is untouched.

import { writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testCerts, type TestCerts } from '../../helpers/certs.js'
import { httpViaProxy, openTunnel, RawClient, socksConnect } from '../../helpers/clients.js'
import { startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'
import { curl } from '../../helpers/run.js'

const KiB = 1024
/** A TCP window, at most: what may be in flight when a connection is cut. */
const WINDOW = 64 * KiB
const UPLOAD_LIMIT = 256 * KiB
const DOWNLOAD_LIMIT = 1024 * KiB

/** A stand-in that counts the bytes each connection brought, once it has closed. */
interface CountingServer {
  readonly port: number
  /** Bytes received by closed connections. */
  received: number
  /** Resolves once `n` connections have closed in all. */
  closed(n: number): Promise<void>
  close(): Promise<void>
}

function counting(server: net.Server): Promise<CountingServer> {
  let closedCount = 0
  const waiters = new Set<() => void>()
  const result: CountingServer = {
    port: 0,
    received: 0,
    closed: (n) =>
      new Promise((resolve) => {
        const check = (): void => {
          if (closedCount < n) return
          waiters.delete(check)
          resolve()
        }
        waiters.add(check)
        check()
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
  server.on('connection', (socket: net.Socket) => {
    socket.on('error', () => undefined)
    socket.on('close', () => {
      result.received += socket.bytesRead
      closedCount++
      for (const w of [...waiters]) w()
    })
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      Object.assign(result, { port: (server.address() as net.AddressInfo).port })
      resolve(result)
    }),
  )
}

let certs: TestCerts
let httpSink: CountingServer
let tlsSink: CountingServer
let proxy: TestProxy
let bigFile: string
let wsOrigin: RecordingOrigin

beforeAll(async () => {
  certs = await testCerts()
  // Reads every request to its end; GET /bytes/N answers N bytes.
  const httpServer = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const n = Number(/^\/bytes\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 2)
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': n })
      res.end(Buffer.alloc(n, 0x61))
    })
  })
  httpSink = await counting(httpServer)
  // A TLS server whose TCP bytes are counted: what a spliced tunnel delivered.
  const tlsServer = net.createServer((raw) => {
    const secure = new tls.TLSSocket(raw, { isServer: true, cert: certs.cert, key: certs.key })
    secure.on('error', () => raw.destroy())
    secure.resume()
    secure.on('end', () => secure.end())
  })
  tlsSink = await counting(tlsServer)
  wsOrigin = await startRecordingOrigin()
  proxy = await startTestProxy({
    allow: [
      ...['up.test', 'down.test', 'few.test'].map((h) => `${h}:${httpSink.port}`),
      `tun.allowed.test:${tlsSink.port}`,
      `ws.test:${wsOrigin.port}`,
    ],
    resolve: {
      'up.test': '127.0.0.1',
      'down.test': '127.0.0.1',
      'few.test': '127.0.0.1',
      'tun.allowed.test': '127.0.0.1',
      'ws.test': '127.0.0.1',
    },
    policy: {
      limits: [
        { pattern: `up.test:${httpSink.port}`, upload: UPLOAD_LIMIT, from: 'test' },
        { pattern: `down.test:${httpSink.port}`, download: DOWNLOAD_LIMIT, from: 'test' },
        { pattern: `few.test:${httpSink.port}`, requests: 2, from: 'test' },
        { pattern: `tun.allowed.test:${tlsSink.port}`, upload: UPLOAD_LIMIT, from: 'test' },
        { pattern: `ws.test:${wsOrigin.port}`, upload: 64 * KiB, from: 'test' },
      ],
    },
    listeners: ['http', 'socks'],
  })
  bigFile = join(tmpdir(), `isorun-budget-upload-${process.pid}.bin`)
  writeFileSync(bigFile, Buffer.alloc(1024 * KiB, 0x62))
})

afterAll(async () => {
  await Promise.all([proxy?.close(), httpSink?.close(), tlsSink?.close(), wsOrigin?.close()])
})

function usageOf(
  host: string,
  sink: { readonly port: number } = httpSink,
): { up: number; down: number; requests: number } {
  const pattern = `${host}:${sink.port}`
  const budget = proxy.running.context.budgets.budgets().find((b) => b.pattern === pattern)
  if (!budget) throw new Error(`no budget ${pattern}`)
  return budget
}

describe('budgets on the data path', () => {
  it('plain HTTP: a curl upload past the budget is cut, the next request gets a 429', async () => {
    const since = proxy.mark()
    const before = httpSink.received
    const upload = await curl([
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-x',
      `http://127.0.0.1:${proxy.port('http')}`,
      '--data-binary',
      `@${bigFile}`,
      `http://up.test:${httpSink.port}/upload`,
    ])
    // Cut: either the 429 reached curl before it noticed, or the connection broke under it.
    expect(upload.code !== 0 || upload.stdout === '429').toBe(true)
    await httpSink.closed(1)
    const used = usageOf('up.test')
    expect(used.up).toBe(UPLOAD_LIMIT)
    const received = httpSink.received - before
    expect(received).toBeLessThanOrEqual(UPLOAD_LIMIT + WINDOW)
    expect(received).toBeGreaterThanOrEqual(UPLOAD_LIMIT - WINDOW)
    const cut = await proxy.waitForEvent((e) => e.host === 'up.test', { since })
    expect(cut).toMatchObject({
      action: 'allow',
      budget: { pattern: `up.test:${httpSink.port}`, exceeded: true },
    })
    expect(cut.error).toMatch(/^budget exceeded: upload/)

    const next = await httpViaProxy(proxy.port('http'), `http://up.test:${httpSink.port}/again`)
    expect(next.status).toBe(429)
    expect(next.headers['x-isorun-error']).toBe('budget-exceeded')
    expect(next.body).toContain(`limit: up.test:${httpSink.port}`)
    const refused = await proxy.waitForEvent((e) => e.path === '/again', { since })
    expect(refused).toMatchObject({
      action: 'deny',
      reason: 'budget-exceeded',
      rule: `up.test:${httpSink.port}`,
    })
  })

  it('plain HTTP: downloads under the budget are untouched; one past it is cut at the limit', async () => {
    const small = await httpViaProxy(
      proxy.port('http'),
      `http://down.test:${httpSink.port}/bytes/${100 * KiB}`,
    )
    expect(small.status).toBe(200)
    expect(small.body.length).toBe(100 * KiB)
    const big = await curl([
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{size_download}',
      '-x',
      `http://127.0.0.1:${proxy.port('http')}`,
      `http://down.test:${httpSink.port}/bytes/${2 * DOWNLOAD_LIMIT}`,
    ])
    expect(big.code).not.toBe(0)
    expect(Number(big.stdout)).toBe(DOWNLOAD_LIMIT - 100 * KiB)
    expect(usageOf('down.test').down).toBe(DOWNLOAD_LIMIT)
    const next = await httpViaProxy(proxy.port('http'), `http://down.test:${httpSink.port}/`)
    expect(next.status).toBe(429)
  })

  it('plain HTTP: a request budget lets that many requests through, then 429', async () => {
    const url = `http://few.test:${httpSink.port}/`
    const statuses: number[] = []
    for (let i = 0; i < 3; i++) statuses.push((await httpViaProxy(proxy.port('http'), url)).status)
    expect(statuses).toEqual([200, 200, 429])
    expect(usageOf('few.test').requests).toBe(2)
  })

  it('a spliced TLS tunnel is cut at its upload budget; then CONNECT gets a 429 and SOCKS 0x02', async () => {
    const since = proxy.mark()
    const before = tlsSink.received
    const tunnel = await openTunnel(proxy.port('http'), `tun.allowed.test:${tlsSink.port}`)
    expect(tunnel.status).toBe(200)
    const ended = await new Promise<string>((resolve) => {
      const secure = tls.connect({
        socket: tunnel.socket,
        servername: 'tun.allowed.test',
        ca: certs.ca,
      })
      secure.on('secureConnect', () => secure.write(Buffer.alloc(1024 * KiB, 0x63)))
      secure.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
      secure.on('close', () => resolve('closed'))
    })
    // The proxy closed the tunnel under a client that was still sending.
    expect(['closed', 'ECONNRESET', 'EPIPE']).toContain(ended)
    const cut = await proxy.waitForEvent((e) => e.host === 'tun.allowed.test', { since })
    expect(cut.error).toMatch(/^budget exceeded: upload 256\.0 KiB of 256\.0 KiB/)
    expect(cut.bytesUp).toBe(UPLOAD_LIMIT)
    await tlsSink.closed(1)
    expect(usageOf('tun.allowed.test', tlsSink).up).toBe(UPLOAD_LIMIT)
    const received = tlsSink.received - before
    expect(received).toBeLessThanOrEqual(UPLOAD_LIMIT)
    expect(received).toBeGreaterThanOrEqual(UPLOAD_LIMIT - WINDOW)

    const again = await openTunnel(proxy.port('http'), `tun.allowed.test:${tlsSink.port}`)
    expect(again.status).toBe(429)
    expect(again.headers['x-isorun-error']).toBe('budget-exceeded')
    const socks = await socksConnect(proxy.port('socks'), 'tun.allowed.test', tlsSink.port)
    expect(socks.code).toBe(0x02)
    socks.socket.destroy()
  })

  it('a WebSocket after its 101 is cut at its upload budget', async () => {
    const client = await RawClient.connect(proxy.port('http'))
    const authority = `ws.test:${wsOrigin.port}`
    client.write(
      `GET http://${authority}/ws HTTP/1.1\r\nHost: ${authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    )
    await client.waitForText('\r\n\r\n')
    expect(client.text).toMatch(/^HTTP\/1\.1 101 /)
    client.write(Buffer.alloc(256 * KiB, 0x64))
    await client.waitForClose()
    await wsOrigin.waitFor(() => wsOrigin.open() === 0)
    const received = wsOrigin.received().reduce((n, b) => n + b.length, 0)
    const head = wsOrigin.text().indexOf('\r\n\r\n') + 4
    expect(received - head).toBe(64 * KiB)
    expect(usageOf('ws.test', wsOrigin).up).toBe(64 * KiB)
  })
})
