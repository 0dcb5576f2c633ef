// The interception stage on loopback, with real clients: hosts with endpoint
// rules, a bound secret or inspect: true are terminated with a leaf of the
// sandbox CA and served request by request (h2 and HTTP/1.1 on both sides,
// trailers, streaming); everything else stays spliced with the origin's own
// certificate. Every request is decided with its method and path and logged
// with its status; a refusal is a 403 (a stream-level one over h2); an
// upstream whose certificate does not verify is refused as upstream-certificate.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { makeCertificates, testCerts, type TestCerts } from '../../helpers/certs.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { curl } from '../../helpers/run.js'
import { startTlsOrigin, type TlsOrigin, type ReceivedRequest } from '../../helpers/tls-origin.js'

const SECRET = 'sk-ant-REAL-KEY-never-in-the-sandbox'
const PLACEHOLDER = 'isorun-secret-anthropic-0123456789abcdef0123456789abcdef'

let certs: TestCerts
let untrusted: TestCerts
let origin: TlsOrigin
let rogue: TlsOrigin
let proxy: TestProxy
let sandboxCa: CaMaterial
let dir: string
let caFile: string
let O: number

beforeAll(async () => {
  certs = await testCerts()
  // A server the proxy has no reason to trust: its own CA, which nobody was given.
  untrusted = await makeCertificates(['evil.test'])
  origin = await startTlsOrigin(certs)
  rogue = await startTlsOrigin(untrusted)
  O = origin.port
  sandboxCa = await createCertificateAuthority({ commonName: 'intercept test sandbox' })
  dir = mkdtempSync(join(tmpdir(), 'isorun-intercept-'))
  caFile = join(dir, 'sandbox-ca.pem')
  writeFileSync(caFile, sandboxCa.cert)
  proxy = await startTestProxy({
    allow: [
      `allowed.test:${O}`,
      `a.test:${O}`,
      `api.anthropic.com:${O}`,
      `b.test:${O}`,
      `evil.test:${rogue.port}`,
    ],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [
          { methods: ['GET', 'HEAD'], path: '/repos/**', action: 'allow' },
          { methods: ['POST'], path: '/upload', action: 'allow' },
          { methods: ['GET'], path: '/sse', action: 'allow' },
          { methods: ['GET'], path: '/trailers', action: 'allow' },
        ],
      },
      { host: 'evil.test', from: 'test', rules: [{ methods: [], path: '/**', action: 'allow' }] },
    ],
    resolve: loopbackNames(),
    listeners: ['http', 'socks'],
    extra: {
      interception: {
        ca: sandboxCa,
        secrets: [
          {
            name: 'anthropic',
            placeholder: PLACEHOLDER,
            value: SECRET,
            hosts: ['api.anthropic.com'],
            header: 'x-api-key',
            scheme: 'raw',
          },
        ],
        upstreamCa: certs.ca.toString(),
      },
    },
  })
})

afterAll(async () => {
  await proxy?.close()
  await origin?.close()
  await rogue?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const via = (kind: 'connect' | 'socks'): string[] =>
  kind === 'connect'
    ? ['--proxy', `http://127.0.0.1:${proxy.port('http')}`]
    : ['--proxy', `socks5h://127.0.0.1:${proxy.port('socks')}`]

describe.each([
  ['connect', '--http1.1'],
  ['connect', '--http2'],
  ['socks', '--http1.1'],
  ['socks', '--http2'],
] as const)('intercepted host with endpoint rules (%s, curl %s)', (kind, version) => {
  it('allows GET on /repos/** and refuses POST with a 403, each logged with method, path and status', async () => {
    const since = proxy.mark()
    const ok = await curl([
      ...via(kind),
      version,
      '--cacert',
      caFile,
      '-w',
      '\n%{http_version} %{http_code}',
      `https://allowed.test:${O}/repos/isorun/isorun?page=2`,
    ])
    expect(ok.stderr).toBe('')
    const [body, status] = ok.stdout.split('\n')
    expect(status).toBe(`${version === '--http2' ? '2' : '1.1'} 200`)
    const seen = JSON.parse(body as string) as ReceivedRequest
    expect(seen.method).toBe('GET')
    expect(seen.path).toBe('/repos/isorun/isorun?page=2')
    const allowed = await proxy.waitForEvent((e) => e.method === 'GET', { since })
    expect(allowed).toMatchObject({
      action: 'allow',
      reason: 'endpoint-allowed',
      path: '/repos/isorun/isorun',
      status: 200,
      host: 'allowed.test',
    })

    const before = origin.received.length
    const denied = await curl([
      ...via(kind),
      version,
      '--cacert',
      caFile,
      '-i',
      '--suppress-connect-headers',
      '-X',
      'POST',
      '--data',
      'x=1',
      `https://allowed.test:${O}/repos/isorun/isorun/issues`,
    ])
    expect(denied.stdout).toMatch(/^HTTP\/[\d.]+ 403/)
    expect(denied.stdout.toLowerCase()).toContain('x-isorun-error: blocked-by-policy')
    expect(denied.stdout).toContain('no-endpoint-match')
    const refused = await proxy.waitForEvent((e) => e.method === 'POST', { since })
    expect(refused).toMatchObject({
      action: 'deny',
      reason: 'no-endpoint-match',
      path: '/repos/isorun/isorun/issues',
    })
    expect(origin.received.length).toBe(before)
  })
})

describe('what is and is not intercepted', () => {
  it('splices a host with no endpoint rules, secrets or inspect: the client sees the origin certificate', async () => {
    // Trusting only the sandbox CA fails: the certificate is the origin's own.
    const sandboxOnly = await curl([...via('connect'), '--cacert', caFile, `https://a.test:${O}/x`])
    expect(sandboxOnly.code).toBe(60)
    const originCa = await curl([
      ...via('connect'),
      '--cacert',
      certs.caFile,
      `https://a.test:${O}/x`,
    ])
    expect(originCa.code).toBe(0)
    expect(JSON.parse(originCa.stdout)).toMatchObject({ path: '/x' })
  })

  it('puts the secret in only on the bound host, and the placeholder goes everywhere else as it is', async () => {
    const bound = await curl([
      ...via('connect'),
      '--cacert',
      caFile,
      '-H',
      `x-api-key: ${PLACEHOLDER}`,
      `https://api.anthropic.com:${O}/v1/messages`,
    ])
    expect(JSON.parse(bound.stdout).headers['x-api-key']).toBe(SECRET)
    // A spliced host: the proxy cannot read the request, so the placeholder is what travels.
    const other = await curl([
      ...via('connect'),
      '--cacert',
      certs.caFile,
      '-H',
      `x-api-key: ${PLACEHOLDER}`,
      `https://b.test:${O}/v1/messages`,
    ])
    expect(JSON.parse(other.stdout).headers['x-api-key']).toBe(PLACEHOLDER)
    // Neither the log lines nor the events hold the value.
    expect(JSON.stringify(proxy.logLines())).not.toContain(SECRET)
    expect(JSON.stringify(proxy.events)).not.toContain(SECRET)
  })

  it('refuses an upstream whose certificate does not verify, as upstream-certificate, logged', async () => {
    const since = proxy.mark()
    const r = await curl([
      ...via('connect'),
      '--cacert',
      caFile,
      '-i',
      '--suppress-connect-headers',
      `https://evil.test:${rogue.port}/anything`,
    ])
    expect(r.stdout).toMatch(/^HTTP\/[\d.]+ 502/)
    expect(r.stdout.toLowerCase()).toContain('x-isorun-error: upstream-certificate')
    const e = await proxy.waitForEvent((x) => x.host === 'evil.test', { since })
    expect(e).toMatchObject({ action: 'deny', reason: 'upstream-certificate', method: 'GET' })
    expect(rogue.received).toHaveLength(0)
  })
})

describe('streaming through interception', () => {
  it.each(['--http1.1', '--http2'])(
    'passes trailers and streams SSE without buffering (%s)',
    async (version) => {
      const t = await curl([
        ...via('connect'),
        version,
        '--cacert',
        caFile,
        '-sS',
        '--raw',
        `https://allowed.test:${O}/trailers`,
      ])
      expect(t.stdout).toContain('done')
      // SSE: the origin sends an event only once the previous one reached the client.
      const { spawn } = await import('node:child_process')
      const child = spawn('curl', [
        '-q',
        '-sSN',
        '--noproxy',
        '',
        version,
        ...via('connect'),
        '--cacert',
        caFile,
        `https://allowed.test:${O}/sse`,
      ])
      let out = ''
      const seen = (n: number): Promise<void> =>
        new Promise((resolve) => {
          const check = (): void => {
            if ((out.match(/data: event/g) ?? []).length >= n) {
              child.stdout.off('data', onData)
              resolve()
            }
          }
          const onData = (c: Buffer): void => {
            out += c.toString()
            check()
          }
          child.stdout.on('data', onData)
          check()
        })
      for (let i = 1; i <= 3; i++) {
        origin.next()
        await seen(i)
      }
      await new Promise((r) => child.once('close', r))
      expect(out).toContain('data: event 3')
    },
  )
})

describe('without a CA', () => {
  it('refuses a host that must be intercepted (interception-unavailable), never splices it', async () => {
    const bare = await startTestProxy({
      allow: [`allowed.test:${O}`],
      endpoints: [
        {
          host: 'allowed.test',
          from: 'test',
          rules: [{ methods: ['GET'], path: '/**', action: 'allow' }],
        },
      ],
      resolve: loopbackNames(),
      listeners: ['http'],
    })
    try {
      const before = origin.received.length
      const r = await curl([
        '--proxy',
        `http://127.0.0.1:${bare.port('http')}`,
        '--cacert',
        certs.caFile,
        `https://allowed.test:${O}/repos/x`,
      ])
      expect(r.code).not.toBe(0)
      const e = await bare.waitForEvent((x) => x.reason === 'interception-unavailable')
      expect(e).toMatchObject({ action: 'deny', host: 'allowed.test' })
      expect(origin.received.length).toBe(before)
    } finally {
      await bare.close()
    }
  })
})
