// `npm run fuzz:seeds`: regenerates the captured seeds in fuzz/corpus/ from
// real clients talking to capture servers on loopback: ClientHellos from curl,
// openssl, Node and Python; HTTP and CONNECT heads from curl, Python requests
// and Node; SOCKS5 handshakes from curl and PySocks; DNS queries from dig. Names
// are test names (allowed.test), mapped to 127.0.0.1 with each client's own
// override, so nothing is resolved or dialled beyond loopback. The hand-written
// seeds (host spellings, rules, profiles) are kept as they are.

import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import { mkdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { dirname, join, resolve } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { parseClientHello } from '../src/proxy/sniff/client-hello.js'

const CORPUS = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fuzz', 'corpus')

function save(target: string, name: string, bytes: Buffer): void {
  mkdirSync(join(CORPUS, target), { recursive: true })
  writeFileSync(join(CORPUS, target, name), bytes)
  console.log(`${target}/${name}: ${bytes.length} bytes`)
}

function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((done) => execFile(command, args, { timeout: 15_000 }, () => done()))
}

type Capture = (socket: net.Socket, data: Buffer) => Buffer | undefined

/** Runs `client` against a one-connection server that answers via `capture` until it returns the bytes to keep. */
async function captureTcp(
  capture: Capture,
  client: (port: number) => Promise<void>,
): Promise<Buffer> {
  let result: Buffer | undefined
  const server = net.createServer((socket) => {
    let data = Buffer.alloc(0)
    socket.on('error', () => undefined)
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk])
      result ??= capture(socket, data)
      if (result) socket.destroy()
    })
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  await client((server.address() as net.AddressInfo).port)
  server.close()
  if (!result) throw new Error('the client sent nothing usable')
  return result
}

const untilHelloEnds: Capture = (_socket, data) => {
  const hello = parseClientHello(data)
  return hello.status === 'incomplete' ? undefined : data
}
const untilHeadEnds: Capture = (_socket, data) => (data.includes('\r\n\r\n') ? data : undefined)

/**
 * A SOCKS5 server that chooses "no authentication", as the proxy does, and keeps the greeting
 * and request (after a leading 0, the target's first byte).
 */
function socksCapture(): Capture {
  let answered = false
  return (socket, data) => {
    if (!answered && data.length >= 2 + data[1]!) {
      socket.write(Buffer.from([0x05, 0x00]))
      answered = true
      return undefined
    }
    // The request: VER CMD RSV ATYP, then the address and port.
    const at = 2 + data[1]!
    const atyp = data[at + 3]
    const length =
      atyp === 0x01 ? 4 : atyp === 0x04 ? 16 : atyp === 0x03 ? 1 + (data[at + 4] ?? 255) : 0
    if (data.length < at + 4 + length + 2) return undefined
    return Buffer.concat([Buffer.from([0]), data.subarray(0, at + 4 + length + 2)])
  }
}

async function clientHellos(): Promise<void> {
  const curl = (extra: string[]) => (port: number) =>
    run('curl', [
      '-sk',
      '--max-time',
      '5',
      ...extra,
      '--resolve',
      `allowed.test:${port}:127.0.0.1`,
      `https://allowed.test:${port}/`,
    ])
  save('client-hello', 'curl-default', await captureTcp(untilHelloEnds, curl([])))
  save(
    'client-hello',
    'curl-tls12-http11',
    await captureTcp(untilHelloEnds, curl(['--tlsv1.2', '--tls-max', '1.2', '--http1.1'])),
  )
  const openssl = (extra: string[]) => (port: number) =>
    run('sh', ['-c', `openssl s_client -connect 127.0.0.1:${port} ${extra.join(' ')} </dev/null`])
  save(
    'client-hello',
    'openssl-sni',
    await captureTcp(untilHelloEnds, openssl(['-servername', 'allowed.test'])),
  )
  save(
    'client-hello',
    'openssl-no-sni-tls12',
    await captureTcp(untilHelloEnds, openssl(['-noservername', '-tls1_2'])),
  )
  save(
    'client-hello',
    'openssl-alpn-h2',
    await captureTcp(
      untilHelloEnds,
      openssl(['-servername', 'allowed.test', '-alpn', 'h2,http/1.1']),
    ),
  )
  const node = (port: number) =>
    new Promise<void>((done) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'api.anthropic.com',
        ALPNProtocols: ['http/1.1'],
      })
      s.on('error', () => done())
      s.on('close', () => done())
    })
  save('client-hello', 'node-alpn', await captureTcp(untilHelloEnds, node))
  const python = (port: number) =>
    run('/usr/bin/python3', [
      '-c',
      `import socket,ssl\nc=ssl.create_default_context()\ntry: c.wrap_socket(socket.create_connection(('127.0.0.1',${port})),server_hostname='pypi.org')\nexcept Exception: pass`,
    ])
  save('client-hello', 'python-ssl', await captureTcp(untilHelloEnds, python))
}

async function heads(): Promise<void> {
  const curlHttp = (port: number) =>
    run('curl', [
      '-s',
      '--max-time',
      '5',
      '--resolve',
      `allowed.test:${port}:127.0.0.1`,
      `http://allowed.test:${port}/path?q=1`,
    ])
  save('http-head', 'curl-get', await captureTcp(untilHeadEnds, curlHttp))
  const curlPost = (port: number) =>
    run('curl', [
      '-s',
      '--max-time',
      '5',
      '-d',
      'a=1',
      '--resolve',
      `allowed.test:${port}:127.0.0.1`,
      `http://allowed.test:${port}/form`,
    ])
  save('http-head', 'curl-post', await captureTcp(untilHeadEnds, curlPost))
  const pythonGet = (port: number) =>
    run('/usr/bin/python3', [
      '-c',
      `import requests\ntry: requests.get('http://127.0.0.1:${port}/simple/', headers={'Host': 'pypi.org'}, timeout=5)\nexcept Exception: pass`,
    ])
  save('http-head', 'python-requests', await captureTcp(untilHeadEnds, pythonGet))
  const nodeGet = (port: number) =>
    new Promise<void>((done) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        path: '/v1/messages',
        method: 'POST',
        headers: { Host: 'api.anthropic.com', 'Content-Type': 'application/json' },
      })
      req.on('error', () => done())
      req.end('{}')
    })
  save('http-head', 'node-post', await captureTcp(untilHeadEnds, nodeGet))
  const proxied = (port: number) =>
    run('curl', [
      '-s',
      '--max-time',
      '5',
      '-x',
      `http://127.0.0.1:${port}`,
      'http://allowed.test/absolute',
    ])
  save('http-head', 'curl-absolute-form', await captureTcp(untilHeadEnds, proxied))

  const curlConnect = (port: number) =>
    run('curl', [
      '-s',
      '--max-time',
      '5',
      '-p',
      '-x',
      `http://127.0.0.1:${port}`,
      'https://allowed.test/',
    ])
  save('connect-head', 'curl', await captureTcp(untilHeadEnds, curlConnect))
  const curlConnectV6 = (port: number) =>
    run('curl', [
      '-s',
      '--max-time',
      '5',
      '-p',
      '-x',
      `http://127.0.0.1:${port}`,
      'https://[2001:db8::1]:8443/',
    ])
  save('connect-head', 'curl-ipv6', await captureTcp(untilHeadEnds, curlConnectV6))
  const pythonConnect = (port: number) =>
    run('/usr/bin/python3', [
      '-c',
      `import requests\ntry: requests.get('https://pypi.org/', proxies={'https': 'http://127.0.0.1:${port}'}, timeout=5)\nexcept Exception: pass`,
    ])
  save('connect-head', 'python-requests', await captureTcp(untilHeadEnds, pythonConnect))
}

async function socks(): Promise<void> {
  const curl = (flag: string, url: string) => (port: number) =>
    run('curl', ['-s', '--max-time', '5', flag, `127.0.0.1:${port}`, url])
  save(
    'socks5',
    'curl-hostname',
    await captureTcp(socksCapture(), curl('--socks5-hostname', 'https://allowed.test/')),
  )
  save(
    'socks5',
    'curl-ipv4',
    await captureTcp(socksCapture(), curl('--socks5', 'http://127.0.0.1:8080/')),
  )
  save(
    'socks5',
    'curl-ipv6',
    await captureTcp(socksCapture(), curl('--socks5', 'http://[2001:db8::1]:8080/')),
  )
  const pysocks = (port: number) =>
    run('/usr/bin/python3', [
      '-c',
      `import socks\ns=socks.socksocket()\ns.set_proxy(socks.SOCKS5,'127.0.0.1',${port},rdns=True,username='fuzz-user',password='fuzz-password')\ns.settimeout(5)\ntry: s.connect(('pypi.org',443))\nexcept Exception: pass`,
    ])
  // With credentials, PySocks offers username/password as well; the proxy picks "none".
  save('socks5', 'pysocks-offers-auth', await captureTcp(socksCapture(), pysocks))
}

async function dnsQueries(): Promise<void> {
  const queries: [string, string[]][] = [
    ['dig-a', ['allowed.test', 'A']],
    ['dig-aaaa-noedns', ['+noedns', 'allowed.test', 'AAAA']],
    ['dig-txt-dnssec', ['+dnssec', 'example.com', 'TXT']],
    ['dig-https-cookie', ['+cookie', 'api.anthropic.com', 'HTTPS']],
  ]
  for (const [name, args] of queries) {
    const socket = dgram.createSocket('udp4')
    await new Promise<void>((done) => socket.bind(0, '127.0.0.1', done))
    const message = new Promise<Buffer>((done) => socket.once('message', (m) => done(m)))
    void run('dig', [
      `@127.0.0.1`,
      '-p',
      String(socket.address().port),
      '+tries=1',
      '+time=1',
      ...args,
    ])
    save('dns', name, await message)
    socket.close()
  }
}

await clientHellos()
await heads()
await socks()
await dnsQueries()
