// The sandbox asks an allowed origin for a large answer and never reads it. The
// proxy must stop reading the origin when the client stops reading, on every
// way an answer travels: a forwarded response, a spliced tunnel, and the one
// answer relayed to an upgrade request the origin did not accept (which once
// read the whole answer into memory: 64 MB of it, for a client that read nothing).
//
// The origin writes 64 MiB, each chunk once the one before was taken by its
// kernel. With backpressure it can hand over only what the kernel buffers on the
// way hold (a few MB) and then waits; the test waits until it has either sent it
// all or made no progress for a while. The pause only ends the wait: a slow
// machine makes it longer, never makes a bounded proxy fail.

import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const TOTAL = 64 * 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 0x61)
/** No chunk taken for this long: the origin is held back. */
const QUIET_MS = 1500

/** An origin that answers its first request (or, `speaksFirst`, its connection) with TOTAL bytes. */
interface StreamingOrigin {
  readonly port: number
  /** Resolves with the bytes the kernel took, once all were or none were for QUIET_MS. */
  settled(): Promise<number>
  close(): Promise<void>
}

async function startStreamingOrigin(head: string, speaksFirst = false): Promise<StreamingOrigin> {
  let flushed = 0
  let onProgress: (() => void) | undefined
  const sockets = new Set<net.Socket>()
  const stream = (socket: net.Socket): void => {
    socket.write(head)
    const next = (): void => {
      if (flushed >= TOTAL || socket.destroyed) return
      socket.write(CHUNK, () => {
        flushed += CHUNK.length
        onProgress?.()
        next()
      })
    }
    next()
  }
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    if (speaksFirst) stream(socket)
    else socket.once('data', () => stream(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    settled: () =>
      new Promise((resolve) => {
        let timer: NodeJS.Timeout | undefined
        const progress = (): void => {
          clearTimeout(timer)
          if (flushed >= TOTAL) return resolve(flushed)
          timer = setTimeout(() => {
            onProgress = undefined
            resolve(flushed)
          }, QUIET_MS)
        }
        onProgress = progress
        progress()
      }),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

const BIG_ANSWER = `HTTP/1.1 200 OK\r\nContent-Length: ${TOTAL}\r\n\r\n`

let forwarded: StreamingOrigin
let upgradeRefuser: StreamingOrigin
let speaker: StreamingOrigin
let proxy: TestProxy

beforeAll(async () => {
  forwarded = await startStreamingOrigin(BIG_ANSWER)
  upgradeRefuser = await startStreamingOrigin(BIG_ANSWER)
  speaker = await startStreamingOrigin('', true)
  proxy = await startTestProxy({
    allow: [
      `allowed.test:${forwarded.port}`,
      `allowed.test:${upgradeRefuser.port}`,
      `tcp:allowed.test:${speaker.port}`,
    ],
    resolve: loopbackNames(),
    listeners: ['http'],
  })
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([forwarded?.close(), upgradeRefuser?.close(), speaker?.close()])
})

/** Opens a client that never reads, sends `request`, and returns what the origin could send. */
async function sentToNonReader(origin: StreamingOrigin, request: string): Promise<number> {
  const client = await RawClient.connect(proxy.port('http'))
  client.socket.pause()
  client.write(request)
  const sent = await origin.settled()
  client.destroy()
  return sent
}

describe('a client that never reads a large answer holds the origin back', () => {
  it('a forwarded response', async () => {
    const O = forwarded.port
    const sent = await sentToNonReader(
      forwarded,
      `GET http://allowed.test:${O}/big HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\n`,
    )
    expect(sent).toBeLessThan(TOTAL / 2)
  })

  it('the answer to a WebSocket upgrade the origin did not accept', async () => {
    const O = upgradeRefuser.port
    const sent = await sentToNonReader(
      upgradeRefuser,
      `GET http://allowed.test:${O}/ws HTTP/1.1\r\nHost: allowed.test:${O}\r\nConnection: Upgrade\r\n` +
        `Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    )
    expect(sent).toBeLessThan(TOTAL / 2)
  })

  it('a spliced tunnel (a tcp: rule, the server speaking first)', async () => {
    const O = speaker.port
    const sent = await sentToNonReader(
      speaker,
      `CONNECT allowed.test:${O} HTTP/1.1\r\nHost: allowed.test:${O}\r\n\r\n`,
    )
    expect(sent).toBeLessThan(TOTAL / 2)
  })
})
