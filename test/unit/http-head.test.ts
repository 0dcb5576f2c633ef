import { spawn } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { beforeAll, describe, expect, it } from 'vitest'
import { costGrowth } from '../helpers/growth.js'
import {
  MAX_HTTP_HEAD_BYTES,
  MAX_HTTP_HEADER_FIELDS,
  classifyFirstBytes,
  parseHttpHead,
  type HttpHeadResult,
} from '../../src/proxy/sniff/http-head.js'

// ---------------------------------------------------------------------------
// Capturing real requests: a loopback listener records the first connection's
// bytes until the head is complete, answers 204 and closes. Only 127.0.0.1 is
// dialled; api.example.test is pinned to it (curl --resolve) or only sent as Host.
// ---------------------------------------------------------------------------

const HOST = 'api.example.test'

async function captureRequest(client: (port: number) => () => void): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  let stopClient: (() => void) | undefined
  const sockets: net.Socket[] = []
  try {
    const captured = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('no complete request head within 10 s')),
        10_000,
      )
      server.once('connection', (socket) => {
        sockets.push(socket)
        let received = Buffer.alloc(0)
        socket.on('error', () => {})
        socket.on('data', (chunk: Buffer) => {
          received = Buffer.concat([received, chunk])
          if (parseHttpHead(received).status !== 'incomplete') {
            clearTimeout(timer)
            socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n')
            resolve(received)
          }
        })
      })
    })
    stopClient = client(port)
    return await captured
  } finally {
    stopClient?.()
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function processClient(command: string, args: string[]): () => void {
  const child = spawn(command, args, { stdio: 'ignore' })
  child.on('error', () => {})
  return () => child.kill('SIGKILL')
}

function curl(port: number, extra: string[], path = '/path/to?q=1&r=%20'): () => void {
  return processClient('curl', [
    '--silent',
    '--noproxy',
    '*',
    '--max-time',
    '5',
    '--resolve',
    `${HOST}:${port}:127.0.0.1`,
    '--output',
    '/dev/null',
    ...extra,
    `http://${HOST}:${port}${path}`,
  ])
}

function nodeRequest(options: http.RequestOptions, body?: string) {
  return (port: number) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...options })
    req.on('error', () => {})
    req.on('response', (res) => res.resume())
    req.end(body)
    return () => req.destroy()
  }
}

const PYTHON_CLIENT = [
  'import http.client, sys',
  "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5)",
  "c.request('GET', '/from-python', headers={'Accept': '*/*'})",
  'c.getresponse().read()',
].join('\n')

// ---------------------------------------------------------------------------

function expectOk(result: HttpHeadResult) {
  if (result.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(result)}`)
  return result
}

function expectInvalid(result: HttpHeadResult, error?: RegExp): void {
  expect(result.status).toBe('invalid')
  if (error !== undefined && result.status === 'invalid') expect(result.error).toMatch(error)
}

const parse = (text: string) => parseHttpHead(Buffer.from(text, 'latin1'))

function headEnd(data: Buffer): number {
  return data.indexOf('\r\n\r\n') + 4
}

/** mulberry32: small deterministic PRNG so fuzz failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

let curlPort = 0
let curlGet: Buffer
let curlPost: Buffer
let nodeWithHost: Buffer
let nodeDefaultHost: Buffer
let nodeDefaultPort = 0
let pythonGet: Buffer
let pythonPort = 0

beforeAll(async () => {
  ;[curlGet, curlPost, nodeWithHost, nodeDefaultHost, pythonGet] = await Promise.all([
    captureRequest((port) => {
      curlPort = port
      return curl(port, ['-H', 'X-Trace: 1'])
    }),
    captureRequest((port) => curl(port, ['--data', 'a=1&b=2'], '/submit')),
    captureRequest(nodeRequest({ method: 'PUT', path: '/obj', headers: { host: HOST } }, 'xyz')),
    captureRequest((port) => {
      nodeDefaultPort = port
      return nodeRequest({ path: '/' })(port)
    }),
    captureRequest((port) => {
      pythonPort = port
      return processClient('/usr/bin/python3', ['-c', PYTHON_CLIENT, String(port)])
    }),
  ])
})

describe('real requests captured on loopback', () => {
  it('curl GET: request line, Host with port, header length', () => {
    const r = expectOk(parseHttpHead(curlGet))
    expect(r).toMatchObject({
      method: 'GET',
      target: '/path/to?q=1&r=%20',
      version: 'HTTP/1.1',
      host: `${HOST}:${curlPort}`,
    })
    expect(r.headerBytes).toBe(headEnd(curlGet))
    expect(curlGet.toString('latin1')).toContain('X-Trace: 1\r\n')
  })

  it('curl POST: the body after the head is not looked at', () => {
    const r = expectOk(parseHttpHead(curlPost))
    expect(r.method).toBe('POST')
    expect(r.target).toBe('/submit')
    expect(r.headerBytes).toBe(headEnd(curlPost))
    const withBody = Buffer.concat([
      curlPost.subarray(0, r.headerBytes),
      Buffer.from('\0\n\n\r garbage'),
    ])
    expect(parseHttpHead(withBody)).toEqual(r)
  })

  it('Node http.request with an explicit Host header', () => {
    const r = expectOk(parseHttpHead(nodeWithHost))
    expect(r).toMatchObject({ method: 'PUT', target: '/obj', version: 'HTTP/1.1', host: HOST })
    expect(r.headerBytes).toBe(headEnd(nodeWithHost))
  })

  it('Node http.request with its default Host (the dialled address)', () => {
    const r = expectOk(parseHttpHead(nodeDefaultHost))
    expect(r.host).toBe(`127.0.0.1:${nodeDefaultPort}`)
  })

  it('Debian python3 http.client', () => {
    const r = expectOk(parseHttpHead(pythonGet))
    expect(r).toMatchObject({
      method: 'GET',
      target: '/from-python',
      host: `127.0.0.1:${pythonPort}`,
    })
  })

  it('every proper prefix is incomplete; the head is ok from its last byte on', () => {
    for (const req of [curlGet, curlPost, nodeWithHost, pythonGet]) {
      const whole = expectOk(parseHttpHead(req))
      for (let n = 0; n < whole.headerBytes; n++) {
        const r = parseHttpHead(req.subarray(0, n))
        if (r.status !== 'incomplete') throw new Error(`prefix ${n}: ${JSON.stringify(r)}`)
      }
      expect(parseHttpHead(req.subarray(0, whole.headerBytes))).toEqual(whole)
    }
  })

  it('classifies the captured bytes as http', () => {
    for (const req of [curlGet, curlPost, nodeWithHost, nodeDefaultHost, pythonGet]) {
      expect(classifyFirstBytes(req)).toBe('http')
    }
  })
})

describe('request line', () => {
  const ok = (line: string, host = 'a.test') => expectOk(parse(`${line}\r\nHost: ${host}\r\n\r\n`))
  const bad = (line: string, error?: RegExp) =>
    expectInvalid(parse(`${line}\r\nHost: a.test\r\n\r\n`), error)

  it('accepts token methods, HTTP/1.0 and the target forms', () => {
    expect(ok('GET / HTTP/1.0').version).toBe('HTTP/1.0')
    expect(ok('PROPFIND /dav/ HTTP/1.1').method).toBe('PROPFIND')
    // Any token is a method for the parser; classifyFirstBytes is what limits the list.
    expect(ok('X-CUSTOM_1 / HTTP/1.1').method).toBe('X-CUSTOM_1')
    expect(ok('OPTIONS * HTTP/1.1').target).toBe('*')
    expect(ok('GET http://A.Test/x HTTP/1.1').target).toBe('http://A.Test/x')
    expect(ok('CONNECT a.test:443 HTTP/1.1', 'a.test:443').target).toBe('a.test:443')
  })

  it.each([
    ['G(ET / HTTP/1.1', /invalid method/],
    ['GE\tT / HTTP/1.1', /invalid method/],
    ['GET  / HTTP/1.1', /empty request target/],
    [' GET / HTTP/1.1', /malformed request line/],
    ['GET / HTTP/1.1 ', /version/],
    ['GET / HTTP/2.0', /version/],
    ['GET / HTTP/1.2', /version/],
    ['GET / http/1.1', /version/],
    ['GET /', /malformed request line/],
    ['GET', /malformed request line/],
    ['GET /a\x7fb HTTP/1.1', /request target/],
    ['GET /caf\xe9 HTTP/1.1', /request target/],
    ['GET a.test/x HTTP/1.1', /origin-form/],
    ['GET * HTTP/1.1', /asterisk/],
    ['CONNECT /x HTTP/1.1', /host:port/],
    ['CONNECT a.test HTTP/1.1', /host:port/],
    ['CONNECT u@a.test:443 HTTP/1.1', /host:port/],
    [`${'G'.repeat(33)} / HTTP/1.1`, /method too long/],
  ])('refuses %j', (line, error) => bad(line, error))

  it('refuses an empty line before the request line', () => {
    expectInvalid(parse('\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n'), /empty request line/)
  })
})

describe('Host header', () => {
  it('refuses zero or several Host headers, whatever their case', () => {
    expectInvalid(parse('GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'), /no Host/)
    expectInvalid(parse('GET / HTTP/1.0\r\n\r\n'), /no Host/)
    expectInvalid(parse('GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n'), /more than one/)
    expectInvalid(parse('GET / HTTP/1.1\r\nHost: a.test\r\nhOST: b.test\r\n\r\n'), /more than one/)
  })

  it('trims optional whitespace, keeps case and port, and reports an empty Host as null', () => {
    expect(expectOk(parse('GET / HTTP/1.1\r\nhost: \t A.Test:8080 \t\r\n\r\n')).host).toBe(
      'A.Test:8080',
    )
    expect(expectOk(parse('GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n')).host).toBe('[::1]:80')
    expect(expectOk(parse('GET / HTTP/1.1\r\nHost:\r\n\r\n')).host).toBeNull()
  })

  it.each(['a.test, b.test', 'a b.test', 'user@a.test', 'a.test/x', 'a%2etest', 'bücher.test'])(
    'refuses Host %j',
    (value) => {
      const r = parseHttpHead(Buffer.from(`GET / HTTP/1.1\r\nHost: ${value}\r\n\r\n`, 'utf8'))
      expectInvalid(r, /Host header has invalid characters/)
    },
  )

  it('refuses a request target whose authority differs from Host', () => {
    expectInvalid(parse('GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n'), /does not match/)
    expectInvalid(parse('GET http://a.test:81/ HTTP/1.1\r\nHost: a.test\r\n\r\n'), /does not match/)
    expectInvalid(parse('GET http://a.test/ HTTP/1.1\r\nHost:\r\n\r\n'), /does not match/)
    expectInvalid(
      parse('CONNECT b.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n'),
      /does not match/,
    )
    expectInvalid(parse('GET http://a.test@b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n'), /userinfo/)
    expect(expectOk(parse('GET HTTP://A.TEST?x HTTP/1.1\r\nHost: a.test\r\n\r\n')).host).toBe(
      'a.test',
    )
  })
})

describe('header lines and framing', () => {
  const withHeaders = (lines: string) => parse(`GET / HTTP/1.1\r\nHost: a.test\r\n${lines}\r\n`)

  it.each([
    ['obs-fold', 'X-A: 1\r\n  continued\r\n', /obs-fold/],
    ['tab fold', 'X-A: 1\r\n\tcontinued\r\n', /obs-fold/],
    ['space before colon', 'X-A : 1\r\n', /invalid header name/],
    ['empty name', ': 1\r\n', /malformed header line/],
    ['no colon', 'X-A 1\r\n', /malformed header line/],
    ['non-token name', 'X(A): 1\r\n', /invalid header name/],
    ['bare CR in value', 'X-A: 1\r2\r\n', /control byte/],
    ['control byte in value', 'X-A: 1\x012\r\n', /control byte/],
    ['DEL in value', 'X-A: 1\x7f\r\n', /control byte/],
    ['NUL in value', 'X-A: 1\x002\r\n', /NUL/],
  ])('refuses %s', (_label, lines, error) => expectInvalid(withHeaders(lines), error))

  it('trims long runs of whitespace in linear time', () => {
    // A regex trim (/[ \t]+$/) takes ~1 s on 30 000 spaces followed by another byte.
    const head = (spaces: number): Buffer =>
      Buffer.from(`GET / HTTP/1.1\r\nX-A: a${' '.repeat(spaces)}b\r\nHost: \t a.test \t \r\n\r\n`)
    expect(expectOk(parseHttpHead(head(30_000))).host).toBe('a.test')
    // 4 times the spaces: about 4 times the work when linear, 16 when quadratic.
    const growth = costGrowth(
      (spaces) => {
        const data = head(spaces)
        for (let i = 0; i < 100; i++) parseHttpHead(data)
      },
      6_000,
      24_000,
    )
    expect(growth).toBeLessThan(8)
  })

  it('refuses whitespace between the request line and the first header', () => {
    expectInvalid(parse('GET / HTTP/1.1\r\n Host: a.test\r\nHost: a.test\r\n\r\n'), /obs-fold/)
  })

  it('accepts obs-text and tabs inside values', () => {
    expect(withHeaders('X-A: caf\xe9\tau lait\r\n').status).toBe('ok')
  })

  it('refuses bare LF, as soon as it is seen', () => {
    expectInvalid(parse('GET / HTTP/1.1\nHost: a.test\r\n\r\n'), /bare LF/)
    expectInvalid(parse('GET / HTTP/1.1\r\nHost: a.test\n\r\n'), /bare LF/)
    expectInvalid(parse('GET / HTTP/1.1\r\nHost: a.test\r\n\n'), /bare LF/)
    // Decided before any blank line arrives.
    expectInvalid(parse('GET / HTTP/1.1\n'), /bare LF/)
    expectInvalid(parse('GET / HTTP/1.1\r\nHost: a.test\nX'), /bare LF/)
  })

  it('refuses NUL before the head is complete', () => {
    expectInvalid(parse('GET /\0'), /NUL/)
    expectInvalid(parse('GET / HTTP/1.1\r\nHost: a\0'), /NUL/)
    expectInvalid(parse('GET /\0 HTTP/1.1\r\nHost: a.test\r\n\r\n'), /NUL/)
  })

  it('refuses a bad method from the first bytes', () => {
    expectInvalid(parse('G\x01'), /invalid method/)
    expectInvalid(parse('\x16\x03\x01'), /invalid method/)
    expectInvalid(parse(' '), /malformed request line/)
    expectInvalid(parse('G'.repeat(40)), /method too long/)
    expect(parse('G'.repeat(32)).status).toBe('incomplete')
  })

  it(`accepts ${MAX_HTTP_HEADER_FIELDS} header fields and refuses one more`, () => {
    const fields = (n: number) => Array.from({ length: n - 1 }, (_, i) => `X-${i}: v\r\n`).join('')
    expect(withHeaders(fields(MAX_HTTP_HEADER_FIELDS)).status).toBe('ok')
    expectInvalid(withHeaders(fields(MAX_HTTP_HEADER_FIELDS + 1)), /header fields/)
  })

  it('refuses a head that does not end within MAX_HTTP_HEAD_BYTES', () => {
    const start = 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: '
    const fill = (n: number) => Buffer.from(start + 'a'.repeat(n - start.length), 'latin1')
    expect(parseHttpHead(fill(MAX_HTTP_HEAD_BYTES - 1)).status).toBe('incomplete')
    expectInvalid(parseHttpHead(fill(MAX_HTTP_HEAD_BYTES)), /larger than 32768/)
    expectInvalid(parseHttpHead(fill(MAX_HTTP_HEAD_BYTES * 4)), /larger than 32768/)
    // A head that ends exactly at the bound is fine, whatever follows it.
    const exact = Buffer.concat([fill(MAX_HTTP_HEAD_BYTES - 4), Buffer.from('\r\n\r\nbody')])
    expect(expectOk(parseHttpHead(exact)).headerBytes).toBe(MAX_HTTP_HEAD_BYTES)
  })
})

describe('classifyFirstBytes', () => {
  it.each([
    [[], 'incomplete'],
    [[0x16], 'incomplete'],
    [[0x16, 0x03], 'tls'],
    [[0x16, 0x03, 0x01, 0x02, 0x00], 'tls'],
    [[0x16, 0x04], 'other'],
    [[0x17, 0x03], 'other'],
    [[0x80, 0x2e], 'other'],
  ])('bytes %j → %s', (bytes, expected) => {
    expect(classifyFirstBytes(Buffer.from(bytes))).toBe(expected)
  })

  it.each([
    ['G', 'incomplete'],
    ['GET', 'incomplete'],
    ['GET ', 'http'],
    ['GET /', 'http'],
    ['GETS', 'other'],
    ['get ', 'other'],
    ['C', 'incomplete'],
    ['CO', 'incomplete'],
    ['COPY ', 'http'],
    ['CONNECT a:1 ', 'http'],
    ['M', 'incomplete'],
    ['MKCOL ', 'http'],
    ['PROPFIND ', 'http'],
    ['PROPPATCH ', 'http'],
    ['REPORT ', 'http'],
    ['PRI * HTTP/2.0\r\n', 'other'],
    ['SSH-2.0-OpenSSH', 'other'],
    ['X', 'other'],
    [' GET', 'other'],
  ])('text %j → %s', (text, expected) => {
    expect(classifyFirstBytes(Buffer.from(text))).toBe(expected)
  })

  it('every method in the list is recognised, and each of its prefixes is incomplete', () => {
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT']
    for (const m of [
      ...methods,
      'PROPFIND',
      'PROPPATCH',
      'MKCOL',
      'COPY',
      'MOVE',
      'LOCK',
      'UNLOCK',
    ]) {
      expect(classifyFirstBytes(Buffer.from(`${m} /`))).toBe('http')
      for (let n = 1; n <= m.length; n++) {
        expect(classifyFirstBytes(Buffer.from(m.slice(0, n)))).toBe('incomplete')
      }
    }
  })
})

describe('hostile input never throws, never hangs, never changes its verdict', () => {
  const statuses = new Set(['ok', 'invalid', 'incomplete'])

  function check(input: Buffer, rand: () => number): HttpHeadResult {
    const full = parseHttpHead(input)
    if (!statuses.has(full.status)) throw new Error(`bad status for ${input.toString('hex')}`)
    if (full.status === 'ok') {
      expect(full.headerBytes).toBeLessThanOrEqual(Math.min(input.length, MAX_HTTP_HEAD_BYTES))
    }
    const prefix = parseHttpHead(input.subarray(0, Math.floor(rand() * (input.length + 1))))
    // Once decided, the status stands (the reason may name a different fault).
    if (prefix.status === 'ok') expect(full).toEqual(prefix)
    if (prefix.status === 'invalid' && full.status !== 'invalid') {
      throw new Error(
        `verdict changed: ${JSON.stringify([prefix, full, input.toString('latin1')])}`,
      )
    }
    classifyFirstBytes(input)
    return full
  }

  it('random garbage from an HTTP-ish alphabet (5000 inputs)', () => {
    const rand = prng(7)
    const alphabet = Buffer.from('GET /HTP1.0\r\n\r\n:\t Host a.test\0\x7f\xff', 'latin1')
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rand() * 200)
      const input = Buffer.alloc(len)
      for (let j = 0; j < len; j++) input[j] = alphabet[Math.floor(rand() * alphabet.length)]!
      check(input, rand)
    }
  })

  it('mutated real requests (6000 inputs)', () => {
    const rand = prng(8)
    const sources = [curlGet, curlPost, nodeWithHost, nodeDefaultHost, pythonGet]
    const counts = { ok: 0, invalid: 0, incomplete: 0 }
    for (let i = 0; i < 6000; i++) {
      const input = Buffer.from(sources[i % sources.length]!)
      const edits = 1 + Math.floor(rand() * 3)
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rand() * input.length)
        if (rand() < 0.5) input[at]! ^= 1 << Math.floor(rand() * 8)
        else input[at] = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x00][Math.floor(rand() * 6)]!
      }
      counts[check(input, rand).status]++
    }
    expect(counts.ok).toBeGreaterThan(100)
    expect(counts.invalid).toBeGreaterThan(100)
  })

  it('heads dripped one byte at a time cost linear time, not quadratic', () => {
    const manyFields = `GET / HTTP/1.1\r\n${'a:b\r\n'.repeat(MAX_HTTP_HEADER_FIELDS - 1)}Host: a.test\r\n\r\n`
    const longValue = `GET / HTTP/1.1\r\nHost: a.test\r\nX: ${'v'.repeat(MAX_HTTP_HEAD_BYTES - 100)}\r\n\r\n`
    const longTarget = `GET /${'t'.repeat(MAX_HTTP_HEAD_BYTES - 100)} HTTP/1.1\r\nHost: a.test\r\n\r\n`
    for (const text of [manyFields, longValue, longTarget]) {
      const data = Buffer.from(text, 'latin1')
      for (let n = 1; n < data.length; n++) {
        if (parseHttpHead(data.subarray(0, n)).status !== 'incomplete') throw new Error(`at ${n}`)
      }
      expect(expectOk(parseHttpHead(data)).headerBytes).toBe(data.length)
      // Each call costs what the bytes so far cost: a prefix 4 times longer, about 4 times
      // the work (16 if a call were quadratic, and a drip of n calls cubic).
      const growth = costGrowth(
        (bytes) => {
          const prefix = data.subarray(0, bytes)
          for (let i = 0; i < 200; i++) parseHttpHead(prefix)
        },
        Math.floor(data.length / 4),
        data.length - 1,
      )
      expect(growth).toBeLessThan(8)
    }
  })
})
