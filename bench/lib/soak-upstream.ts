// The soak benchmark's upstreams, run as a child process of bench/soak.ts so
// that their sockets and memory are their own (read from /proc by pid).
// Loopback only. Node's own http/https servers, keep-alive, on these paths:
//
//   GET /small      a small 200 response
//   GET /bulk/N     N bytes (backpressure respected)
//   GET /reset/N    announces N bytes, sends half, then resets the connection (RST)
//
// Started with `node soak-upstream.js CERT KEY`; reports {httpPort, tlsPort}
// over IPC and exits when the parent disconnects.

import { readFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import tls from 'node:tls'

const SMALL = 'hello, soak\n'
/** The TCP socket under each TLS connection: a reset must go to it (a TLSSocket cannot send one). */
const tcpOf = new WeakMap<net.Socket, net.Socket>()
const CHUNK = Buffer.alloc(64 * 1024, 'x')

function sendBytes(res: http.ServerResponse, total: number, then: () => void): void {
  let left = total
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        res.once('drain', pump)
        return
      }
    }
    then()
  }
  res.on('close', () => res.off('drain', pump))
  pump()
}

function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume()
  const url = req.url ?? '/'
  const bulk = /^\/bulk\/(\d+)$/.exec(url)
  const reset = /^\/reset\/(\d+)$/.exec(url)
  if (bulk) {
    const total = Number(bulk[1])
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': total })
    sendBytes(res, total, () => res.end())
  } else if (reset) {
    const total = Number(reset[1])
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': total })
    const socket = tcpOf.get(req.socket) ?? req.socket
    sendBytes(res, Math.floor(total / 2), () => socket.resetAndDestroy())
  } else {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': SMALL.length })
    res.end(SMALL)
  }
}

function configure(server: http.Server): http.Server {
  // Tunnels stay open for the whole soak: no keep-alive or request timeouts here.
  server.keepAliveTimeout = 0
  server.requestTimeout = 0
  server.headersTimeout = 60_000
  server.on('clientError', (_err, socket) => socket.destroy())
  return server
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () =>
      resolve((server.address() as net.AddressInfo).port),
    )
  })
}

async function main(): Promise<void> {
  const [certPath, keyPath] = process.argv.slice(2)
  if (!certPath || !keyPath || !process.send) {
    process.stderr.write('usage: forked by bench/soak.ts with CERT KEY\n')
    process.exit(2)
  }
  const plain = configure(http.createServer(handle))
  // HTTPS by hand (TLS over our own TCP server, HTTP over that), to keep the TCP socket.
  const overTls = configure(http.createServer(handle))
  const secureContext = tls.createSecureContext({
    cert: readFileSync(certPath),
    key: readFileSync(keyPath),
    minVersion: 'TLSv1.3',
  })
  const secure = net.createServer((tcp) => {
    const socket = new tls.TLSSocket(tcp, { isServer: true, secureContext })
    tcpOf.set(socket, tcp)
    socket.on('error', () => tcp.destroy())
    tcp.on('error', () => socket.destroy())
    overTls.emit('connection', socket)
  })
  const [httpPort, tlsPort] = await Promise.all([listen(plain), listen(secure)])
  process.send({ httpPort, tlsPort })
  process.on('disconnect', () => process.exit(0))
}

void main()
