// The benchmark's upstream servers, run as a child process of bench/proxy.ts so
// that their CPU is never counted as the proxy's. Loopback only.
//
//   HTTP (keep-alive): every request head gets a small fixed 200 response.
//   TLS: reads one request head; "GET /bulk/N" answers N bytes, anything else a
//   small response; then closes (Connection: close).
//
// Both are plain net/tls servers with minimal parsing: the bench only sends
// GETs without bodies, and a cheap upstream leaves more of the machine to the
// proxy under test. Started with `node upstream.js CERT KEY`; reports
// {httpPort, tlsPort} over IPC and exits when the parent disconnects.

import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'

const SMALL_BODY = 'hello, bench\n'
const SMALL_KEEPALIVE = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${SMALL_BODY.length}\r\nConnection: keep-alive\r\n\r\n${SMALL_BODY}`,
)
const SMALL_CLOSE = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${SMALL_BODY.length}\r\nConnection: close\r\n\r\n${SMALL_BODY}`,
)
const CHUNK = Buffer.alloc(64 * 1024, 'x')
const END = Buffer.from('\r\n\r\n')

/** Counts request heads across chunk boundaries and answers each. */
function serveKeepAlive(socket: net.Socket): void {
  socket.setNoDelay(true)
  let tail: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    const data = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk
    let count = 0
    let from = 0
    for (;;) {
      const at = data.indexOf(END, from)
      if (at < 0) break
      count++
      from = at + 4
    }
    tail = from < data.length ? data.subarray(Math.max(from, data.length - 3)) : Buffer.alloc(0)
    if (count === 1) socket.write(SMALL_KEEPALIVE)
    else if (count > 1) socket.write(Buffer.concat(Array<Buffer>(count).fill(SMALL_KEEPALIVE)))
  })
  socket.on('error', () => socket.destroy())
}

function sendBulk(socket: tls.TLSSocket, total: number): void {
  socket.write(
    `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\nConnection: close\r\n\r\n`,
  )
  let left = total
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        socket.once('drain', pump)
        return
      }
    }
    socket.end()
  }
  pump()
}

function serveTls(socket: tls.TLSSocket): void {
  let head = Buffer.alloc(0)
  const onData = (chunk: Buffer): void => {
    head = Buffer.concat([head, chunk])
    const end = head.indexOf(END)
    if (end < 0) {
      if (head.length > 16 * 1024) socket.destroy()
      return
    }
    socket.off('data', onData)
    const line = head.subarray(0, head.indexOf('\r\n')).toString('latin1')
    const bulk = /^GET \/bulk\/(\d+) /.exec(line)
    if (bulk) sendBulk(socket, Number(bulk[1]))
    else socket.end(SMALL_CLOSE)
  }
  socket.on('data', onData)
  socket.on('error', () => socket.destroy())
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, () =>
      resolve((server.address() as net.AddressInfo).port),
    )
  })
}

async function main(): Promise<void> {
  const [certPath, keyPath] = process.argv.slice(2)
  if (!certPath || !keyPath || !process.send) {
    process.stderr.write('usage: forked by bench/proxy.ts with CERT KEY\n')
    process.exit(2)
  }
  const httpServer = net.createServer(serveKeepAlive)
  const tlsServer = tls.createServer(
    { cert: readFileSync(certPath), key: readFileSync(keyPath), minVersion: 'TLSv1.3' },
    serveTls,
  )
  tlsServer.on('tlsClientError', () => undefined)
  const [httpPort, tlsPort] = await Promise.all([listen(httpServer), listen(tlsServer)])
  process.send({ httpPort, tlsPort })
  process.on('disconnect', () => process.exit(0))
}

void main()
