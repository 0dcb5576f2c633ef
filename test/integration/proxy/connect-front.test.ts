// The HTTP proxy port reads CONNECT heads itself and hands every other
// connection to Node's HTTP server. Checked here: bytes sent right after the
// head belong to the tunnel; heads and requests split into single bytes; a
// CONNECT after a request on a kept-alive connection; malformed and oversized
// heads; the idle sweep; large transfers through a tunnel to a slow reader,
// both when the client and when the server speaks first.

import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import { parseResponses, RawClient, tlsGet, tunnelResponses } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { BANNER, type EchoBody, startUpstreams, type Upstreams } from '../../helpers/upstreams.js'

const BULK = randomBytes(16 * 1024 * 1024)
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/**
 * Sends BULK in pieces of 1 byte to 24 KiB, often one per turn, so the proxy
 * reads pieces of every size, small ones too (a small read whose write to the
 * client has to wait must not be overwritten by the next read): at once when
 * `first` (the server speaks first), else after the client's first bytes.
 */
async function startBulkServer(first: boolean): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => socket.destroy())
    socket.setNoDelay(true)
    let at = 0
    let piece = 1
    const send = (): void => {
      while (at < BULK.length) {
        piece = (piece * 7919 + 13) % (at % 3 === 0 ? 24 * 1024 : 1500)
        const end = Math.min(BULK.length, at + piece + 1)
        const flushed = socket.write(BULK.subarray(at, end))
        at = end
        if (!flushed) return void socket.once('drain', send)
        if (piece % 4 !== 0) return void setImmediate(send)
      }
      socket.end()
    }
    if (first) send()
    else socket.once('data', send)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

/**
 * Reads everything from a socket slowly until it closes: nothing for the first
 * 300 ms (the kernel's buffers fill, and the proxy's writes to this client wait),
 * then a pause after every chunk.
 */
function readSlowly(socket: net.Socket, skipHead: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    socket.pause()
    setTimeout(() => socket.resume(), 300)
    const chunks: Buffer[] = []
    let head = skipHead
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      if (head) {
        pending = Buffer.concat([pending, chunk])
        const end = pending.indexOf('\r\n\r\n')
        if (end < 0) return
        if (!pending.toString('latin1', 0, end).startsWith('HTTP/1.1 200 '))
          return reject(new Error(`tunnel refused: ${pending.toString()}`))
        head = false
        chunk = pending.subarray(end + 4)
      }
      chunks.push(chunk)
      socket.pause()
      setTimeout(() => socket.resume(), 2)
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks)))
  })
}

/**
 * A socket to the proxy whose first write carries the CONNECT head and the
 * client's first bytes together (one segment), and whose reads start after the
 * proxy's 200 head: TLS over a pipelined CONNECT.
 */
function pipelinedConnect(port: number, authority: string): Duplex {
  const socket = net.connect({ host: '127.0.0.1', port })
  let first = true
  let head: Buffer | undefined = Buffer.alloc(0)
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, callback) {
      if (first) {
        first = false
        const connect = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`
        socket.write(Buffer.concat([Buffer.from(connect), chunk]), callback)
      } else socket.write(chunk, callback)
    },
    read() {
      socket.resume()
    },
    final(callback) {
      socket.end(callback)
    },
    destroy(err, callback) {
      socket.destroy()
      callback(err)
    },
  })
  socket.on('data', (chunk: Buffer) => {
    if (head) {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      const status = head.toString('latin1', 0, end)
      if (!status.startsWith('HTTP/1.1 200 ')) duplex.destroy(new Error(status))
      chunk = head.subarray(end + 4)
      head = undefined
      if (chunk.length === 0) return
    }
    if (!duplex.push(chunk)) socket.pause()
  })
  socket.on('end', () => duplex.push(null))
  socket.on('error', (err) => duplex.destroy(err))
  socket.on('close', () => duplex.destroy())
  return duplex
}

/**
 * A parent HTTP proxy for --upstream-proxy: answers CONNECT host:port by dialling
 * 127.0.0.1:port (every test name is loopback) and splicing; counts its tunnels.
 */
async function startParentProxy(): Promise<{
  port: number
  tunnels: () => number
  targets: string[]
  close(): void
}> {
  let tunnels = 0
  const targets: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('error', () => client.destroy())
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      client.off('data', onData)
      const line = /^CONNECT ([^ ]+):(\d+) HTTP/.exec(head.toString('latin1'))
      targets.push(`${line?.[1]}:${line?.[2]}`)
      const port = Number(line?.[2])
      const upstream = net.connect({ host: '127.0.0.1', port }, () => {
        tunnels++
        client.write('HTTP/1.1 200 Connection established\r\n\r\n')
        const rest = head.subarray(end + 4)
        if (rest.length > 0) upstream.write(rest)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      sockets.add(upstream)
      upstream.on('error', () => client.destroy())
      client.on('close', () => upstream.destroy())
    }
    client.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    tunnels: () => tunnels,
    targets,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

async function writeBytewise(client: RawClient, text: string): Promise<void> {
  for (const ch of text) {
    client.write(ch)
    await sleep(1)
  }
}

/** The idle time of the idle-sweep test's proxy. */
const IDLE_MS = 1000

let certs: TestCerts
let up: Upstreams
let bulkAfter: { port: number; close(): void }
let bulkFirst: { port: number; close(): void }
let parent: Awaited<ReturnType<typeof startParentProxy>>
let proxy: TestProxy
let idleProxy: TestProxy
let viaParent: TestProxy
let T: number
let H: number
let P: number

beforeAll(async () => {
  certs = await testCerts()
  up = await startUpstreams()
  bulkAfter = await startBulkServer(false)
  bulkFirst = await startBulkServer(true)
  T = up.tls.port
  H = up.http.port
  proxy = await startTestProxy({
    allow: [
      `allowed.test:${T}`,
      `allowed.test:${H}`,
      `tcp:a.test:${bulkAfter.port}`,
      `tcp:ssh.test:${bulkFirst.port}`,
    ],
    resolve: loopbackNames(),
    listeners: ['http'],
  })
  P = proxy.port('http')
  idleProxy = await startTestProxy({
    allow: [`tcp:ssh.test:${up.banner.port}`],
    resolve: loopbackNames(),
    listeners: ['http'],
    timeouts: { idleMs: IDLE_MS },
  })
  parent = await startParentProxy()
  viaParent = await startTestProxy({
    allow: [`allowed.test:${T}`, `tcp:ssh.test:${up.banner.port}`, `tcp:a.test:${bulkAfter.port}`],
    resolve: loopbackNames(),
    listeners: ['http'],
    extra: { parentProxy: new URL(`http://127.0.0.1:${parent.port}`) },
  })
})

afterAll(async () => {
  await Promise.all([proxy?.close(), idleProxy?.close(), viaParent?.close()])
  parent?.close()
  await up?.close()
  bulkAfter?.close()
  bulkFirst?.close()
})

const echoed = (body: string): EchoBody => JSON.parse(body) as EchoBody

describe('the CONNECT front door', () => {
  it('a ClientHello sent with the CONNECT head, in one segment, goes into the tunnel', async () => {
    const since = proxy.mark()
    const result = await tlsGet(pipelinedConnect(P, `allowed.test:${T}`), {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: 'allowed.test',
      path: '/pipelined',
    })
    expect(echoed(result.body).url).toBe('/pipelined')
    const event = await proxy.waitForEvent((e) => e.port === T, { since })
    expect(event).toMatchObject({ action: 'allow', protocol: 'connect', sni: 'allowed.test' })
  })

  it('a CONNECT head written one byte at a time', async () => {
    const client = await RawClient.connect(P)
    await writeBytewise(client, `CONNECT allowed.test:${H} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    expect(tunnelResponses(client.data).connectStatus).toBe(200)
    client.write(`GET /bytewise HTTP/1.1\r\nHost: allowed.test:${H}\r\nConnection: close\r\n\r\n`)
    await client.waitForClose()
    expect(echoed(tunnelResponses(client.data).responses[0]?.body ?? '').url).toBe('/bytewise')
  })

  it('a plain request written one byte at a time goes to the HTTP server', async () => {
    const client = await RawClient.connect(P)
    await writeBytewise(
      client,
      `GET http://allowed.test:${H}/split HTTP/1.1\r\nHost: allowed.test:${H}\r\nConnection: close\r\n\r\n`,
    )
    await client.waitForClose()
    const [response] = parseResponses(client.data)
    expect(response?.status).toBe(200)
    expect(echoed(response?.body ?? '').url).toBe('/split')
  })

  it('a request that starts like CONNECT but is not one is the HTTP server’s (400)', async () => {
    const client = await RawClient.connect(P)
    client.write('CONNECTX allowed.test:1 HTTP/1.1\r\n\r\n')
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 400 /)
  })

  it('a CONNECT after a request on a kept-alive connection', async () => {
    const client = await RawClient.connect(P)
    client.write(`GET http://allowed.test:${H}/first HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await client.waitFor((d) => parseResponses(d).length === 1)
    const before = client.data.length
    client.write(`CONNECT allowed.test:${H} HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await client.waitFor((d) => d.subarray(before).includes('\r\n\r\n'))
    expect(client.data.subarray(before).toString('latin1')).toMatch(/^HTTP\/1\.1 200 /)
    client.write(`GET /second HTTP/1.1\r\nHost: allowed.test:${H}\r\nConnection: close\r\n\r\n`)
    await client.waitForClose()
    const [second] = tunnelResponses(client.data.subarray(before)).responses
    expect(echoed(second?.body ?? '').url).toBe('/second')
  })

  it.each([
    [
      'a bare LF between header lines',
      'CONNECT allowed.test:443 HTTP/1.1\r\nHost: a\nX: b\r\n\r\n',
    ],
    ['a folded header line', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n'],
    ['a control character', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\u0001b\r\n\r\n'],
    ['HTTP/2.0', 'CONNECT allowed.test:443 HTTP/2.0\r\n\r\n'],
    ['a 40 KiB header', `CONNECT allowed.test:443 HTTP/1.1\r\nX: ${'a'.repeat(40_000)}\r\n\r\n`],
  ])('%s: 400 and closed', async (_name, head) => {
    const client = await RawClient.connect(P)
    client.write(head)
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 400 /)
  })

  it('a head with no end past 32 KiB is cut off without waiting for more', async () => {
    const client = await RawClient.connect(P)
    client.write(`CONNECT allowed.test:443 HTTP/1.1\r\nX: ${'a'.repeat(40_000)}`)
    await client.waitForClose()
    expect(client.text).toMatch(/^HTTP\/1\.1 400 /)
  })
})

describe('tunnels', () => {
  it('16 MiB to a slow reader, the client speaking first: every byte, in order, logged', async () => {
    const since = proxy.mark()
    const socket = net.connect({ host: '127.0.0.1', port: P })
    const received = readSlowly(socket, true)
    socket.write(`CONNECT a.test:${bulkAfter.port} HTTP/1.1\r\nHost: a.test\r\n\r\ngo`)
    const data = await received
    expect(data.length).toBe(BULK.length)
    expect(sha(data)).toBe(sha(BULK))
    const event = await proxy.waitForEvent((e) => e.port === bulkAfter.port, { since })
    expect(event).toMatchObject({ action: 'allow', bytesUp: 2, bytesDown: BULK.length })
    expect(event.error).toBeUndefined()
  })

  it('16 MiB to a slow reader, the server speaking first', async () => {
    const since = proxy.mark()
    const socket = net.connect({ host: '127.0.0.1', port: P })
    const received = readSlowly(socket, true)
    socket.write(`CONNECT ssh.test:${bulkFirst.port} HTTP/1.1\r\nHost: ssh.test\r\n\r\n`)
    const data = await received
    expect(sha(data)).toBe(sha(BULK))
    const event = await proxy.waitForEvent((e) => e.port === bulkFirst.port, { since })
    expect(event).toMatchObject({ action: 'allow', bytesUp: 0, bytesDown: BULK.length })
  })

  it('a tunnel with no traffic either way is closed by the idle sweep, and says so', async () => {
    const since = idleProxy.mark()
    const client = await RawClient.connect(idleProxy.port('http'))
    client.write(`CONNECT ssh.test:${up.banner.port} HTTP/1.1\r\nHost: ssh.test\r\n\r\n`)
    await client.waitForText(BANNER)
    // Traffic keeps it open past the idle time: pings back to back (each as soon as the one
    // before is echoed, so a gap is a round trip, not a sleep) for twice the idle time…
    const started = Date.now()
    let i = 0
    for (; Date.now() - started < 2 * IDLE_MS; i++) {
      client.write(`ping${i}.`)
      await client.waitForText(`echo:ping${i}.`)
    }
    expect(client.closed).toBe(false)
    // …silence closes it.
    await client.waitForClose()
    const event = await idleProxy.waitForEvent((e) => e.host === 'ssh.test', { since })
    expect(event).toMatchObject({ action: 'allow', error: 'idle timeout' })
  })
})

describe('tunnels through a parent proxy (--upstream-proxy)', () => {
  it('TLS through the parent', async () => {
    const before = parent.tunnels()
    const socket = pipelinedConnect(viaParent.port('http'), `allowed.test:${T}`)
    const result = await tlsGet(socket, {
      ca: certs.ca,
      servername: 'allowed.test',
      hostHeader: 'allowed.test',
      path: '/via-parent',
    })
    expect(echoed(result.body).url).toBe('/via-parent')
    expect(parent.tunnels()).toBe(before + 1)
  })

  it('a server that speaks first, through the parent', async () => {
    const since = viaParent.mark()
    const client = await RawClient.connect(viaParent.port('http'))
    client.write(`CONNECT ssh.test:${up.banner.port} HTTP/1.1\r\nHost: ssh.test\r\n\r\n`)
    await client.waitForText(BANNER)
    client.write('hi')
    await client.waitForText('echo:hi')
    client.destroy()
    const event = await viaParent.waitForEvent((e) => e.host === 'ssh.test', { since })
    // The parent is asked for the address this proxy checked, not the name.
    expect(event).toMatchObject({
      action: 'allow',
      address: `via 127.0.0.1:${parent.port} to 127.0.0.1`,
    })
    expect(event.bytesDown).toBe(BANNER.length + 'echo:hi'.length)
    expect(parent.targets).toContain(`127.0.0.1:${up.banner.port}`)
    expect(parent.targets).not.toContain(`ssh.test:${up.banner.port}`)
  })

  it('16 MiB to a slow reader through the parent', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: viaParent.port('http') })
    const received = readSlowly(socket, true)
    socket.write(`CONNECT a.test:${bulkAfter.port} HTTP/1.1\r\nHost: a.test\r\n\r\ngo`)
    expect(sha(await received)).toBe(sha(BULK))
  })
})
