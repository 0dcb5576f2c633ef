// SOCKS5 handshake (src/proxy/socks5.ts) against real clients (curl, Debian's
// python3 with PySocks, raw sockets) and, for exact chunking, an in-memory
// stream. Only loopback is used: the harness maps the names it allows to local
// servers itself and never resolves or dials anything else.

import { execFile } from 'node:child_process'
import * as http from 'node:http'
import * as net from 'node:net'
import { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  formatIPv6,
  readSocksRequest,
  sendSocksReply,
  SocksProtocolError,
  SocksReplyCode,
  type ReadSocksRequestOptions,
  type SocksRequest,
} from '../../src/proxy/socks5.js'

const PYTHON = '/usr/bin/python3'
const CURL_PROXY_ERROR = 97 // CURLE_PROXY: the SOCKS server refused

type Target = { host: string; port: number }
type ProxyEvent =
  | { ok: true; request: SocksRequest; outcome: 'allowed' | 'denied' | 'unsupported' }
  | { ok: false; error: unknown }

interface Proxy {
  port: number
  events: ProxyEvent[]
  /** The first event at index >= since that matches, waiting for it if needed. */
  waitFor(since: number, pred?: (e: ProxyEvent) => boolean, ms?: number): Promise<ProxyEvent>
  close(): Promise<void>
}

// --- upstreams --------------------------------------------------------------

let httpUpstream: http.Server
let httpPort = 0
let echoUpstream: net.Server
let echoPort = 0
const echoReceived: Buffer[] = [] // everything each echo connection received, in order

async function listen(server: net.Server | http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

function startProxy(
  route: (req: SocksRequest) => Target | undefined,
  opts: ReadSocksRequestOptions,
): Promise<Proxy> {
  const events: ProxyEvent[] = []
  const waiters = new Set<() => void>()
  const push = (e: ProxyEvent): void => {
    events.push(e)
    for (const w of waiters) w()
  }
  const open = new Set<net.Socket>()
  const server = net.createServer((client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => {})
    readSocksRequest(client, opts).then(
      (request) => {
        if (request.command !== 'connect') {
          push({ ok: true, request, outcome: 'unsupported' })
          sendSocksReply(client, SocksReplyCode.commandNotSupported)
          client.end()
          return
        }
        const target = route(request)
        if (!target) {
          push({ ok: true, request, outcome: 'denied' })
          sendSocksReply(client, SocksReplyCode.notAllowed)
          client.end()
          return
        }
        push({ ok: true, request, outcome: 'allowed' })
        const upstream = net.connect(target.port, target.host)
        upstream.on('error', () => {
          sendSocksReply(client, SocksReplyCode.connectionRefused)
          client.destroy()
        })
        upstream.on('connect', () => {
          sendSocksReply(client, SocksReplyCode.succeeded, {
            host: upstream.localAddress ?? '0.0.0.0',
            port: upstream.localPort ?? 0,
          })
          upstream.write(request.rest)
          client.pipe(upstream)
          upstream.pipe(client)
        })
        client.on('close', () => upstream.destroy())
      },
      (error: unknown) => push({ ok: false, error }),
    )
  })
  return listen(server).then((port) => ({
    port,
    events,
    waitFor(since, pred = () => true, ms = 5000) {
      return new Promise<ProxyEvent>((resolve, reject) => {
        const check = (): boolean => {
          const hit = events.slice(since).find(pred)
          if (!hit) return false
          waiters.delete(check)
          clearTimeout(timer)
          resolve(hit)
          return true
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`no matching proxy event within ${ms} ms`))
        }, ms)
        waiters.add(check)
        check()
      })
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of open) s.destroy()
      }),
  }))
}

// The harness's allow-list: names (and two loopback literals) to local servers.
function route(req: SocksRequest): Target | undefined {
  const http = { host: '127.0.0.1', port: httpPort }
  if (req.addressType === 'domain' && req.host === 'allowed.test') return http
  if (req.addressType === 'domain' && req.host === 'echo.test') return { ...http, port: echoPort }
  if (req.addressType === 'ipv4' && req.host === '127.0.0.1' && req.port === httpPort) return http
  if (req.addressType === 'ipv6' && req.host === '::1' && req.port === httpPort) return http
  return undefined
}

// --- clients ----------------------------------------------------------------

interface RunResult {
  code: number
  stdout: string
  stderr: string
}

function run(file: string, args: string[]): Promise<RunResult> {
  // Keep the clients away from any proxy settings in the environment.
  const env = { ...process.env }
  for (const k of Object.keys(env)) if (/_proxy$/i.test(k)) delete env[k]
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

const curl = (args: string[]): Promise<RunResult> => run('curl', ['-q', '-sS', '-m', '5', ...args])

const PYSOCKS_SCRIPT = `
import sys, socks
host, port, proxy_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
user = sys.argv[4] if len(sys.argv) > 4 else None
password = sys.argv[5] if len(sys.argv) > 5 else None
s = socks.socksocket()
s.set_proxy(socks.SOCKS5, '127.0.0.1', proxy_port, rdns=True, username=user, password=password)
s.settimeout(5)
try:
    s.connect((host, port))
    s.sendall(b'GET / HTTP/1.0\\r\\nHost: ' + host.encode('idna') + b'\\r\\n\\r\\n')
    data = b''
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print('OK')
    print(data.decode('utf-8', 'replace'))
except socks.ProxyError as e:
    inner = getattr(e, 'socket_err', None)
    print('ERR', type(e).__name__, type(inner).__name__ if inner else '-', str(e))
`

const pysocks = (args: string[]): Promise<RunResult> => run(PYTHON, ['-c', PYSOCKS_SCRIPT, ...args])

/** A raw TCP client that collects everything it receives. */
class RawClient {
  data = Buffer.alloc(0)
  readonly closed: Promise<void>
  private notify: (() => void) | undefined

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk])
      this.notify?.()
    })
    socket.on('error', () => {})
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        resolve()
        this.notify?.()
      }),
    )
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  write(bytes: Buffer | number[]): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(Buffer.from(bytes), (err) => (err ? reject(err) : resolve())),
    )
  }

  /** Resolves with the first n bytes received; rejects if the connection closes or time runs out first. */
  async bytes(n: number, ms = 5000): Promise<Buffer> {
    const deadline = Date.now() + ms
    while (this.data.length < n) {
      if (this.socket.destroyed) throw new Error(`closed after ${this.data.length}/${n} bytes`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${this.data.length}/${n} bytes`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.notify = () => {
          clearTimeout(t)
          resolve()
        }
      })
    }
    return this.data.subarray(0, n)
  }

  /** Waits for the server to close the connection; resolves with everything received. */
  async untilClosed(ms = 20_000): Promise<Buffer> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('server did not close the connection')), ms)
    })
    try {
      await Promise.race([this.closed, timeout])
    } finally {
      clearTimeout(timer)
    }
    return this.data
  }
}

function domainRequest(name: string, port: number, cmd = 0x01): Buffer {
  const n = Buffer.from(name)
  return Buffer.from([0x05, cmd, 0x00, 0x03, n.length, ...n, port >> 8, port & 0xff])
}

const GREETING = Buffer.from([0x05, 0x01, 0x00])
const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
const payloadOf = (len: number, seed = 0): Buffer =>
  Buffer.from(Array.from({ length: len }, (_, i) => (i * 7 + seed) & 0xff))

function asError(e: ProxyEvent): SocksProtocolError {
  if (e.ok) throw new Error(`expected a handshake failure, got request for ${e.request.host}`)
  expect(e.error).toBeInstanceOf(SocksProtocolError)
  return e.error as SocksProtocolError
}

function asRequest(e: ProxyEvent): SocksRequest & { outcome: string } {
  if (!e.ok) throw new Error(`expected a request, got ${String(e.error)}`)
  return { ...e.request, outcome: e.outcome }
}

// --- in-memory stream for exact chunk control --------------------------------

function memorySocket(): { socket: net.Socket; stream: Duplex; written: () => Buffer } {
  const out: Buffer[] = []
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk)
      cb()
    },
  })
  return { socket: stream as unknown as net.Socket, stream, written: () => Buffer.concat(out) }
}

function drain(stream: Duplex): Buffer {
  const parts: Buffer[] = []
  for (let c = stream.read() as Buffer | null; c !== null; c = stream.read() as Buffer | null) {
    parts.push(c)
  }
  return Buffer.concat(parts)
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

// -----------------------------------------------------------------------------

let proxy: Proxy
const TIMEOUT_MS = 1000

beforeAll(async () => {
  httpUpstream = http.createServer((req, res) => {
    res.setHeader('connection', 'close')
    res.end(`hello from upstream: ${req.method} ${req.url} host=${req.headers.host}\n`)
  })
  httpPort = await listen(httpUpstream)
  echoUpstream = net.createServer((s) => {
    const index = echoReceived.push(Buffer.alloc(0)) - 1
    s.on('error', () => {})
    s.on('data', (chunk: Buffer) => {
      echoReceived[index] = Buffer.concat([echoReceived[index] ?? Buffer.alloc(0), chunk])
      s.write(chunk)
    })
  })
  echoPort = await listen(echoUpstream)
  proxy = await startProxy(route, { timeoutMs: TIMEOUT_MS })
})

afterAll(async () => {
  await proxy?.close()
  httpUpstream?.closeAllConnections()
  await new Promise((r) => httpUpstream?.close(r))
  await new Promise((r) => echoUpstream?.close(r))
})

async function expectProxyStillWorks(): Promise<void> {
  const since = proxy.events.length
  const r = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, 'http://allowed.test/'])
  expect(r.code, r.stderr).toBe(0)
  expect(r.stdout).toContain('hello from upstream: GET / host=allowed.test')
  expect(asRequest(await proxy.waitFor(since)).outcome).toBe('allowed')
}

describe('curl', () => {
  it('reaches an allowed name through --socks5-hostname', async () => {
    const since = proxy.events.length
    const r = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, 'http://allowed.test/'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('hello from upstream: GET / host=allowed.test\n')
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({
      command: 'connect',
      addressType: 'domain',
      host: 'allowed.test',
      port: 80,
      outcome: 'allowed',
    })
    expect(req.rest.length).toBe(0) // curl waits for our reply before sending
  })

  it('gets a SOCKS refusal (exit 97) for a name not on the list', async () => {
    const since = proxy.events.length
    const r = await curl(['--socks5-hostname', `127.0.0.1:${proxy.port}`, 'http://denied.test/'])
    expect(r.code).toBe(CURL_PROXY_ERROR)
    expect(r.stdout).toBe('')
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({ host: 'denied.test', port: 80, outcome: 'denied' })
  })

  it('sends an IPv4 literal with --socks5, which takes the IP path', async () => {
    const since = proxy.events.length
    const r = await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.1:${httpPort}/`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`hello from upstream: GET / host=127.0.0.1:${httpPort}`)
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({ addressType: 'ipv4', host: '127.0.0.1', port: httpPort })
  })

  it('is refused for an IPv4 literal not on the list', async () => {
    const since = proxy.events.length
    const r = await curl(['--socks5', `127.0.0.1:${proxy.port}`, `http://127.0.0.9:${httpPort}/`])
    expect(r.code).toBe(CURL_PROXY_ERROR)
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({ addressType: 'ipv4', host: '127.0.0.9', outcome: 'denied' })
  })

  it('sends an IPv6 literal [::1] that is parsed as ::1', async () => {
    const since = proxy.events.length
    const r = await curl(['-g', '--socks5', `127.0.0.1:${proxy.port}`, `http://[::1]:${httpPort}/`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('hello from upstream: GET /')
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({ addressType: 'ipv6', host: '::1', port: httpPort })
  })
})

describe('python3 PySocks', () => {
  it('reaches an allowed name', async () => {
    const since = proxy.events.length
    const r = await pysocks(['allowed.test', '80', String(proxy.port)])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^OK\n/)
    expect(r.stdout).toContain('hello from upstream: GET / host=allowed.test')
    expect(asRequest(await proxy.waitFor(since))).toMatchObject({
      addressType: 'domain',
      host: 'allowed.test',
      port: 80,
    })
  })

  it('raises "0x02: Connection not allowed by ruleset" for a denied name', async () => {
    const since = proxy.events.length
    const r = await pysocks(['denied.test', '443', String(proxy.port)])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^ERR (GeneralProxyError|SOCKS5Error) /)
    expect(r.stdout).toContain('0x02: Connection not allowed by ruleset')
    expect(asRequest(await proxy.waitFor(since))).toMatchObject({
      host: 'denied.test',
      port: 443,
      outcome: 'denied',
    })
  })

  it('sends a long IPv6 literal that comes out in RFC 5952 form', async () => {
    const since = proxy.events.length
    const r = await pysocks(['2001:0db8:0000:0000:0000:0000:0000:0001', '443', String(proxy.port)])
    expect(r.stdout).toContain('0x02: Connection not allowed by ruleset')
    expect(asRequest(await proxy.waitFor(since))).toMatchObject({
      addressType: 'ipv6',
      host: '2001:db8::1',
      outcome: 'denied',
    })
  })
})

describe('raw clients', () => {
  it('keeps bytes pipelined after the request in `rest` (one write)', async () => {
    const since = proxy.events.length
    const payload = payloadOf(300, 3)
    const c = await RawClient.open(proxy.port)
    await c.write(Buffer.concat([GREETING, domainRequest('echo.test', 7), payload]))
    const got = await c.bytes(2 + 10 + payload.length)
    expect(got.subarray(0, 2)).toEqual(Buffer.from([5, 0]))
    expect(got.subarray(2, 4)).toEqual(Buffer.from([5, SocksReplyCode.succeeded]))
    expect(got.subarray(5, 6)).toEqual(Buffer.from([0x01])) // bound address is the IPv4 loopback
    expect(got.subarray(12)).toEqual(payload) // the echo of exactly what was sent
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({ host: 'echo.test', port: 7 })
    // One small write on loopback arrives as one segment: all of it is `rest`.
    expect(req.rest).toEqual(payload)
    c.socket.destroy()
  })

  it('handles every byte in its own write, with delays, and loses nothing', async () => {
    const since = proxy.events.length
    const echoesBefore = echoReceived.length
    const payload = payloadOf(40, 11)
    const all = Buffer.concat([
      Buffer.from([0x05, 0x02, 0x02, 0x00]), // offers user/pass and no-auth
      domainRequest('echo.test', 7),
      payload,
    ])
    const c = await RawClient.open(proxy.port)
    for (const byte of all) {
      await c.write([byte])
      await sleep(2)
    }
    const got = await c.bytes(2 + 10 + payload.length)
    expect(got.subarray(0, 4)).toEqual(Buffer.from([5, 0, 5, 0]))
    expect(got.subarray(12)).toEqual(payload)
    const req = asRequest(await proxy.waitFor(since))
    expect(req).toMatchObject({ addressType: 'domain', host: 'echo.test', port: 7 })
    // Whatever the handshake had not yet seen went through the socket itself.
    expect(payload.subarray(0, req.rest.length)).toEqual(req.rest)
    expect(echoReceived[echoesBefore]).toEqual(payload)
    c.socket.destroy()
  })

  it.each([
    ['BIND', 0x02, 'bind'],
    ['UDP ASSOCIATE', 0x03, 'udp-associate'],
  ])('answers %s with a full 10-byte 0x07 reply', async (_name, cmd, command) => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    await c.write(Buffer.concat([GREETING, Buffer.from([5, cmd, 0, 1, 127, 0, 0, 1, 0x1f, 0x90])]))
    const got = await c.untilClosed()
    expect(got).toEqual(Buffer.concat([Buffer.from([5, 0]), reply(0x07)]))
    expect(asRequest(await proxy.waitFor(since))).toMatchObject({
      command,
      addressType: 'ipv4',
      host: '127.0.0.1',
      port: 8080,
      outcome: 'unsupported',
    })
  })

  it('answers a refusal with a full 10-byte reply, then closes', async () => {
    const c = await RawClient.open(proxy.port)
    await c.write(Buffer.concat([GREETING, domainRequest('denied.test', 443)]))
    expect(await c.untilClosed()).toEqual(Buffer.concat([Buffer.from([5, 0]), reply(0x02)]))
  })
})

describe('malformed input: the server answers or drops, and keeps working', () => {
  const cases: Array<{
    name: string
    send: Buffer
    reason: string
    answer: Buffer
  }> = [
    {
      name: 'wrong version (a SOCKS4 request)',
      send: Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]),
      reason: 'bad-version',
      answer: Buffer.alloc(0),
    },
    {
      name: 'wrong version in the request',
      send: Buffer.concat([GREETING, Buffer.from([4, 1, 0, 1, 127, 0, 0, 1, 0, 80])]),
      reason: 'bad-version',
      answer: Buffer.from([5, 0]),
    },
    {
      name: 'nmethods = 0',
      send: Buffer.from([5, 0]),
      reason: 'no-acceptable-method',
      answer: Buffer.from([5, 0xff]),
    },
    {
      name: 'only GSSAPI offered',
      send: Buffer.from([5, 1, 1]),
      reason: 'no-acceptable-method',
      answer: Buffer.from([5, 0xff]),
    },
    {
      name: 'unknown command',
      send: Buffer.concat([GREETING, Buffer.from([5, 9, 0, 1, 127, 0, 0, 1, 0, 80])]),
      reason: 'bad-command',
      answer: Buffer.concat([Buffer.from([5, 0]), reply(0x07)]),
    },
    {
      name: 'bad address type',
      send: Buffer.concat([GREETING, Buffer.from([5, 1, 0, 2, 127, 0, 0, 1, 0, 80])]),
      reason: 'bad-address-type',
      answer: Buffer.concat([Buffer.from([5, 0]), reply(0x08)]),
    },
    {
      name: 'zero-length domain',
      send: Buffer.concat([GREETING, Buffer.from([5, 1, 0, 3, 0, 0, 80])]),
      reason: 'bad-address',
      answer: Buffer.concat([Buffer.from([5, 0]), reply(0x01)]),
    },
    {
      name: 'domain containing NUL',
      send: Buffer.concat([GREETING, domainRequest('allowed.test\0.evil', 80)]),
      reason: 'bad-address',
      answer: Buffer.concat([Buffer.from([5, 0]), reply(0x01)]),
    },
    {
      name: 'non-zero reserved byte',
      send: Buffer.concat([GREETING, Buffer.from([5, 1, 7, 1, 127, 0, 0, 1, 0, 80])]),
      reason: 'bad-reserved',
      answer: Buffer.concat([Buffer.from([5, 0]), reply(0x01)]),
    },
  ]

  it.each(cases)('$name', async ({ send, reason, answer }) => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    await c.write(send)
    expect(await c.untilClosed()).toEqual(answer)
    expect(asError(await proxy.waitFor(since)).reason).toBe(reason)
    await expectProxyStillWorks()
  })

  it('a request truncated by the client closing', async () => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    await c.write(Buffer.concat([GREETING, domainRequest('allowed.test', 80).subarray(0, 9)]))
    await c.bytes(2)
    c.socket.end()
    const err = asError(await proxy.waitFor(since))
    expect(err.reason).toBe('closed')
    await c.untilClosed()
    await expectProxyStillWorks()
  })

  it('a reset in the middle of the greeting', async () => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    await c.write([5, 3, 0])
    await sleep(20)
    c.socket.resetAndDestroy()
    expect(asError(await proxy.waitFor(since)).reason).toBe('closed')
    await expectProxyStillWorks()
  })

  it('silence: times out and closes', async () => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    const started = Date.now()
    expect(await c.untilClosed()).toEqual(Buffer.alloc(0))
    const elapsed = Date.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50)
    expect(asError(await proxy.waitFor(since)).reason).toBe('timeout')
    await expectProxyStillWorks()
  })

  it('a slow drip is cut off at the handshake deadline, not per byte', async () => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    const all = Buffer.concat([GREETING, domainRequest('allowed.test', 80)])
    let sent = 0
    for (const byte of all) {
      if (c.socket.destroyed) break
      await c.write([byte]).catch(() => {})
      sent++
      await sleep(150)
    }
    await c.untilClosed()
    // Each byte came well within the timeout of the one before (150 ms against 1000): only a
    // deadline for the whole handshake ends this before the last byte.
    expect(sent).toBeLessThan(all.length)
    expect(asError(await proxy.waitFor(since)).reason).toBe('timeout')
    await expectProxyStillWorks()
  })
})

describe('clients that offer username/password', () => {
  // The proxy takes no credentials: it answers "no authentication" when that is offered too,
  // and 05 FF when it is not.
  it('only username/password offered: 05 FF and a close', async () => {
    const since = proxy.events.length
    const c = await RawClient.open(proxy.port)
    await c.write(Buffer.from([5, 1, 2]))
    expect(await c.untilClosed()).toEqual(Buffer.from([5, 0xff]))
    expect(asError(await proxy.waitFor(since)).reason).toBe('no-acceptable-method')
  })

  it('curl with credentials in the proxy URL gets through without them', async () => {
    const since = proxy.events.length
    const r = await curl([
      '-x',
      `socks5h://sandbox-1:s3cret@127.0.0.1:${proxy.port}`,
      'http://allowed.test/',
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('hello from upstream: GET / host=allowed.test')
    expect(asRequest(await proxy.waitFor(since))).toMatchObject({ host: 'allowed.test' })
  })

  it('PySocks with credentials gets through without them', async () => {
    const r = await pysocks(['allowed.test', '80', String(proxy.port), 'sandbox-1', 's3cret'])
    expect(r.stdout).toMatch(/^OK\n/)
    expect(r.stdout).toContain('hello from upstream')
  })
})

describe('readSocksRequest on an in-memory stream (exact chunking)', () => {
  const request = Buffer.concat([GREETING, domainRequest('example.test', 443)])
  const tls = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])

  it('one chunk: greeting + request + payload, payload comes back as rest', async () => {
    const m = memorySocket()
    const p = readSocksRequest(m.socket, { timeoutMs: 1000 })
    m.stream.push(Buffer.concat([request, tls]))
    const req = await p
    expect(req).toEqual({
      command: 'connect',
      addressType: 'domain',
      host: 'example.test',
      port: 443,
      rest: tls,
    })
    expect(m.written()).toEqual(Buffer.from([5, 0]))
    // Paused with nothing of ours listening: later bytes stay in the stream.
    expect(m.stream.isPaused()).toBe(true)
    expect(m.stream.listenerCount('data')).toBe(0)
    m.stream.push(Buffer.from('later'))
    await nextTurn()
    expect(drain(m.stream).toString()).toBe('later')
  })

  it('one byte per chunk, including the payload: nothing is consumed past the request', async () => {
    const m = memorySocket()
    const p = readSocksRequest(m.socket, { timeoutMs: 5000 })
    let done = false
    void p.then(() => (done = true))
    for (const byte of request) {
      expect(done).toBe(false)
      m.stream.push(Buffer.from([byte]))
      await nextTurn()
    }
    for (const byte of tls) {
      m.stream.push(Buffer.from([byte]))
      await nextTurn()
    }
    const req = await p
    expect(req.host).toBe('example.test')
    expect(req.rest.length).toBe(0)
    expect(drain(m.stream)).toEqual(tls)
  })

  it('request split at every possible point parses the same', async () => {
    const all = Buffer.concat([request, tls])
    for (let cut = 1; cut < all.length; cut++) {
      const m = memorySocket()
      const p = readSocksRequest(m.socket, { timeoutMs: 1000 })
      m.stream.push(all.subarray(0, cut))
      await nextTurn()
      m.stream.push(all.subarray(cut))
      const req = await p
      expect(req.host).toBe('example.test')
      expect(Buffer.concat([req.rest, drain(m.stream)])).toEqual(tls)
    }
  })

  it('decodes domains as strict UTF-8 and rejects invalid UTF-8', async () => {
    const good = memorySocket()
    const p = readSocksRequest(good.socket, { timeoutMs: 1000 })
    good.stream.push(Buffer.concat([GREETING, domainRequest('bücher.example', 80)]))
    expect((await p).host).toBe('bücher.example')

    const bad = memorySocket()
    const q = readSocksRequest(bad.socket, { timeoutMs: 1000 })
    bad.stream.push(
      Buffer.concat([GREETING, Buffer.from([5, 1, 0, 3, 3, 0x61, 0xff, 0x62, 0, 80])]),
    )
    await expect(q).rejects.toMatchObject({ reason: 'bad-address' })
    expect(bad.written()).toEqual(Buffer.concat([Buffer.from([5, 0]), reply(0x01)]))
  })

  it('rejects when the stream ends early, and on a socket that is already closed', async () => {
    const m = memorySocket()
    const p = readSocksRequest(m.socket, { timeoutMs: 1000 })
    m.stream.push(request.subarray(0, 6))
    m.stream.push(null)
    await expect(p).rejects.toBeInstanceOf(SocksProtocolError)
    await expect(p).rejects.toMatchObject({ reason: 'closed' })

    const gone = memorySocket()
    gone.stream.destroy()
    await expect(readSocksRequest(gone.socket, { timeoutMs: 1000 })).rejects.toMatchObject({
      reason: 'closed',
    })
  })

  it('accepts a request that arrives together with the end of the stream', async () => {
    const m = memorySocket()
    const p = readSocksRequest(m.socket, { timeoutMs: 1000 })
    m.stream.push(Buffer.concat([request, tls]))
    m.stream.push(null)
    expect(await p).toMatchObject({ host: 'example.test', rest: tls })
  })

  it('an error on the socket after the handshake does not go unhandled', async () => {
    const m = memorySocket()
    const p = readSocksRequest(m.socket, { timeoutMs: 1000 })
    m.stream.push(request)
    await p
    // An 'error' no listener takes is thrown from the event loop: watch for it directly.
    const uncaught: unknown[] = []
    const monitor = (err: unknown): void => void uncaught.push(err)
    process.on('uncaughtExceptionMonitor', monitor)
    try {
      m.stream.destroy(new Error('ECONNRESET'))
      await nextTurn()
    } finally {
      process.off('uncaughtExceptionMonitor', monitor)
    }
    expect(uncaught).toEqual([])
    expect(m.stream.destroyed).toBe(true)
  })

  it.each([
    ['00000000000000000000000000000001', '::1'],
    ['00000000000000000000000000000000', '::'],
    ['20010db8000000000000000000000001', '2001:db8::1'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    ['00010000000000020000000000000003', '1:0:0:2::3'],
    ['00010002000300040005000600070000', '1:2:3:4:5:6:7:0'],
    ['00010002000300040005000600000000', '1:2:3:4:5:6::'],
    ['00000000000000000000ffff7f000001', '::ffff:7f00:1'],
    ['fe80000000000000000000000abcef01', 'fe80::abc:ef01'],
    ['ABCDEF0000000000000000000000FFFF'.toLowerCase(), 'abcd:ef00::ffff'],
  ])('IPv6 %s is formatted as %s', async (hex, text) => {
    const m = memorySocket()
    const p = readSocksRequest(m.socket, { timeoutMs: 1000 })
    m.stream.push(
      Buffer.concat([
        GREETING,
        Buffer.from([5, 1, 0, 4]),
        Buffer.from(hex, 'hex'),
        Buffer.from([1, 187]),
      ]),
    )
    expect(await p).toMatchObject({ addressType: 'ipv6', host: text, port: 443 })
  })

  it('IPv6 formatting agrees with the WHATWG URL serializer on random addresses', () => {
    let seed = 12345
    const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff)
    for (let i = 0; i < 2000; i++) {
      // Mostly-zero groups so that runs of zeros (and ties between runs) are common.
      const bytes = Buffer.alloc(16)
      for (let g = 0; g < 8; g++) {
        if (rand() % 3 === 0) bytes.writeUInt16BE(rand() & 0xffff, g * 2)
        else if (rand() % 5 === 0) bytes.writeUInt16BE(rand() & 0xf, g * 2)
      }
      const ours = formatIPv6(bytes)
      expect(`[${ours}]`).toBe(new URL(`http://[${ours}]/`).hostname)
      expect(net.isIPv6(ours)).toBe(true)
    }
  })
})

describe('sendSocksReply', () => {
  const replyFor = (code: SocksReplyCode, bound?: { host: string; port: number }): Buffer => {
    const m = memorySocket()
    sendSocksReply(m.socket, code, bound)
    return m.written()
  }

  it('exports the RFC 1928 reply codes', () => {
    expect(SocksReplyCode).toEqual({
      succeeded: 0,
      generalFailure: 1,
      notAllowed: 2,
      networkUnreachable: 3,
      hostUnreachable: 4,
      connectionRefused: 5,
      ttlExpired: 6,
      commandNotSupported: 7,
      addressTypeNotSupported: 8,
    })
  })

  it('defaults the bound address to 0.0.0.0:0', () => {
    expect(replyFor(SocksReplyCode.notAllowed)).toEqual(reply(0x02))
  })

  it('encodes IPv4, IPv6 and domain bound addresses', () => {
    expect(replyFor(SocksReplyCode.succeeded, { host: '10.1.2.3', port: 0x1234 })).toEqual(
      Buffer.from([5, 0, 0, 1, 10, 1, 2, 3, 0x12, 0x34]),
    )
    expect(replyFor(SocksReplyCode.succeeded, { host: '::ffff:127.0.0.1', port: 80 })).toEqual(
      Buffer.concat([
        Buffer.from([5, 0, 0, 4]),
        Buffer.from('00000000000000000000ffff7f000001', 'hex'),
        Buffer.from([0, 80]),
      ]),
    )
    expect(replyFor(SocksReplyCode.succeeded, { host: '2001:db8::1:0:0:1', port: 1 })).toEqual(
      Buffer.concat([
        Buffer.from([5, 0, 0, 4]),
        Buffer.from('20010db8000000000001000000000001', 'hex'),
        Buffer.from([0, 1]),
      ]),
    )
    expect(replyFor(SocksReplyCode.succeeded, { host: 'proxy.local', port: 1080 })).toEqual(
      Buffer.concat([
        Buffer.from([5, 0, 0, 3, 11]),
        Buffer.from('proxy.local'),
        Buffer.from([4, 56]),
      ]),
    )
  })

  it('falls back to 0.0.0.0:0 for an unusable bound address, and ignores a dead socket', () => {
    expect(replyFor(SocksReplyCode.succeeded, { host: '1.2.3.4', port: 70000 })).toEqual(reply(0))
    expect(replyFor(SocksReplyCode.succeeded, { host: '', port: 1 })).toEqual(reply(0))
    expect(replyFor(SocksReplyCode.succeeded, { host: 'x'.repeat(256), port: 1 })).toEqual(reply(0))
    const m = memorySocket()
    m.stream.destroy()
    expect(() => sendSocksReply(m.socket, SocksReplyCode.generalFailure)).not.toThrow()
    expect(m.written().length).toBe(0)
  })
})
