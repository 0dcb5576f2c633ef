// bench:slow-reader — the sidecar's memory when a client does not read a large
// response that ends with its connection (no length, Connection: close), over
// plain HTTP and intercepted HTTPS (HTTP/1.1 upstream). The client reads nothing
// until the origin has finished or is stuck (stalled across two rounds of requests
// the proxy answered), then reads it all. Printed per build: the bytes the origin got
// out before the client read, peak RSS (VmHWM) while held and over the whole run.
//
//   npm run bench:slow-reader [-- --cli OTHER/dist/isorun-proxy.mjs ...]   (A/B against other builds)

import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { SIDECAR_NODE_FLAGS } from '../src/runner/container-specs.js'
import { makeCertificates } from './lib/certs.js'
import { allowOnLoopback, startIsorunProxy, type RunningProxy } from './lib/isorun-proxy.js'

const MiB = 1024 * 1024
const BODY_BYTES = 128 * MiB
const CHUNK = Buffer.alloc(MiB, 0x61)
const NAME = 'bench.test'
const SIDECAR = resolve(fileURLToPath(new URL('.', import.meta.url)), '../isorun-proxy.mjs')

interface Origin {
  accepted: number
  finished: boolean
  stalled: boolean
}

function serve(origin: Origin, socket: net.Socket): void {
  socket.on('error', () => undefined)
  socket.once('data', () => {
    socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')
    let queued = 0
    const pump = (): void => {
      origin.stalled = false
      while (queued < BODY_BYTES) {
        queued += CHUNK.length
        if (!socket.write(CHUNK, () => (origin.accepted += CHUNK.length))) {
          origin.stalled = true
          return void socket.once('drain', pump)
        }
      }
      socket.end(() => (origin.finished = true))
    }
    pump()
  })
}

function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) / 1024
}

/** A request the proxy refuses itself: it has turned its event loop over. */
async function probe(proxy: RunningProxy): Promise<void> {
  const socket = net.connect(proxy.port, '127.0.0.1')
  socket.on('error', () => undefined)
  socket.end('GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n')
  socket.resume()
  await new Promise((r) => socket.once('close', r))
}

async function openClient(proxy: RunningProxy, port: number, ca?: string): Promise<net.Socket> {
  const raw = net.connect(proxy.port, '127.0.0.1')
  await new Promise((r) => raw.once('connect', r))
  if (ca === undefined) return raw
  raw.write(`CONNECT ${NAME}:${port} HTTP/1.1\r\nHost: ${NAME}:${port}\r\n\r\n`)
  await new Promise((r) => raw.once('data', r))
  const client = tls.connect({ socket: raw, servername: NAME, ca, ALPNProtocols: ['http/1.1'] })
  await new Promise((r, j) => (client.once('secureConnect', r), client.once('error', j)))
  return client
}

interface Run {
  heldMiB: number
  peakWhileHeldMiB: number
  peakMiB: number
  receivedMiB: number
}

async function measure(cli: string, certs?: Certs): Promise<Run> {
  const origin: Origin = { accepted: 0, finished: false, stalled: false }
  const server = certs
    ? tls.createServer({ key: certs.key, cert: certs.cert, ALPNProtocols: ['http/1.1'] }, (s) =>
        serve(origin, s),
      )
    : net.createServer((s) => serve(origin, s))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  const args = certs ? certs.proxyArgs : allowOnLoopback(NAME)
  const proxy = await startIsorunProxy(args, { nodeFlags: SIDECAR_NODE_FLAGS, cli })
  try {
    const client = await openClient(proxy, port, certs?.caPem)
    client.pause()
    const target = certs ? '/big' : `http://${NAME}:${port}/big`
    client.write(`GET ${target} HTTP/1.0\r\nHost: ${NAME}:${port}\r\n\r\n`)
    // Stuck: stalled, with nothing more out, across two rounds of probes in a row.
    for (let still = 0; !origin.finished && still < 2;) {
      const before = origin.accepted
      for (let i = 0; i < 5; i++) await probe(proxy)
      still = origin.stalled && origin.accepted === before ? still + 1 : 0
    }
    const held = origin.accepted
    const peakWhileHeld = peakRssMiB(proxy.pid)
    let received = 0
    const closed = new Promise((r) => client.once('close', r))
    client.on('data', (c: Buffer) => (received += c.length))
    client.resume()
    await closed
    return {
      heldMiB: held / MiB,
      peakWhileHeldMiB: peakWhileHeld,
      peakMiB: peakRssMiB(proxy.pid),
      receivedMiB: received / MiB,
    }
  } finally {
    await proxy.stop()
    server.close()
  }
}

interface Certs {
  key: string
  cert: string
  caPem: string
  proxyArgs: string[]
}

function interceptionCerts(dir: string): Certs {
  const files = makeCertificates(dir, NAME)
  const profiles = join(dir, 'profiles')
  mkdirSync(profiles)
  writeFileSync(
    join(profiles, 'bench-intercept.yaml'),
    `name: bench-intercept\ndescription: ${NAME} intercepted\ninspect: true\nallow:\n  - '${NAME}:*'\n`,
  )
  return {
    key: readFileSync(files.key, 'utf8'),
    cert: readFileSync(files.cert, 'utf8'),
    caPem: readFileSync(files.ca, 'utf8'),
    proxyArgs: [
      ...['--profile', 'bench-intercept', '--profiles-dir', profiles],
      ...['--resolve', `${NAME}=127.0.0.1`, '--allow-private', 'loopback'],
      ...['--ca-cert', files.ca, '--ca-key', files.caKey, '--upstream-ca', files.ca],
    ],
  }
}

const others: string[] = []
for (let i = 2; i < process.argv.length; i++)
  if (process.argv[i] === '--cli') others.push(resolve(process.argv[++i] as string))
const dir = mkdtempSync(join(tmpdir(), 'isorun-bench-slow-reader-'))
try {
  const certs = interceptionCerts(dir)
  console.log(
    `${BODY_BYTES / MiB} MiB close-delimited response, client reads nothing until the origin is done or stuck (MiB)`,
  )
  console.log(
    'build | upstream | origin out before the client read | peak RSS while held | peak RSS',
  )
  for (const cli of [SIDECAR, ...others]) {
    for (const [label, tlsCerts] of [
      ['plain HTTP', undefined],
      ['intercepted', certs],
    ] as const) {
      const r = await measure(cli, tlsCerts)
      if (r.receivedMiB < BODY_BYTES / MiB)
        throw new Error(`${cli}: client got ${r.receivedMiB} MiB`)
      const build = cli === SIDECAR ? 'this build' : cli
      console.log(
        `${build} | ${label} | ${r.heldMiB.toFixed(0)} | ${r.peakWhileHeldMiB.toFixed(1)} | ${r.peakMiB.toFixed(1)}`,
      )
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
