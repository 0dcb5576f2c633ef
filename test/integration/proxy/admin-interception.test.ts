// PUT/GET /interception on a real proxy: the token is required, the CA and
// secrets are taken as a whole or not at all, GET and the log never show the
// CA key or a secret value, and the minted leaves and the upstream trust are
// what the interception stage will use (a real TLS handshake checks both).

import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { makeCertificates, type TestCerts } from '../../helpers/certs.js'
import { ADMIN_TOKEN, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const SECRET_VALUE = 'sk-ant-TOP-SECRET-VALUE-123'
const PLACEHOLDER = 'isorun-secret-anthropic-0123456789abcdef'

let proxy: TestProxy
let admin: string
let ca: CaMaterial
let upstream: TestCerts

beforeAll(async () => {
  proxy = await startTestProxy({ allow: ['api.anthropic.test'], listeners: ['admin'] })
  admin = `http://127.0.0.1:${proxy.port('admin')}`
  ca = await createCertificateAuthority({ commonName: 'admin test sandbox' })
  upstream = await makeCertificates(['upstream.test'])
})

afterAll(async () => {
  await proxy?.close()
})

const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` }

function settings(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ca,
    secrets: [
      {
        name: 'anthropic',
        placeholder: PLACEHOLDER,
        value: SECRET_VALUE,
        hosts: ['api.anthropic.test'],
        header: 'x-api-key',
      },
    ],
    upstreamCa: upstream.ca.toString(),
    ...overrides,
  }
}

function put(body: unknown, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(`${admin}/interception`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

function leaked(text: string): boolean {
  const keyBody = ca.key.split('\n')[1] ?? 'no key line'
  return text.includes(SECRET_VALUE) || text.includes(keyBody) || text.includes('PRIVATE KEY')
}

describe('PUT /interception', () => {
  it('refuses callers without the token, and changes nothing', async () => {
    expect((await put(settings(), {})).status).toBe(401)
    expect((await put(settings(), { Authorization: 'Bearer wrong' })).status).toBe(401)
    expect((await fetch(`${admin}/interception`)).status).toBe(401)
    expect(proxy.running.context.interception.minter).toBeUndefined()
  })

  it('takes the CA, secrets and upstream CAs, and GET shows no key and no value', async () => {
    const r = await put(settings())
    const putText = await r.text()
    expect(r.status).toBe(200)
    const got = await fetch(`${admin}/interception`, { headers: auth })
    const text = await got.text()
    for (const body of [putText, text]) expect(leaked(body)).toBe(false)
    const summary = JSON.parse(text) as {
      ca: { fingerprint: string; cert: string }
      secrets: Record<string, unknown>[]
      upstreamCa: { certificates: number }
    }
    expect(summary.ca.cert.trim()).toBe(ca.cert.trim())
    expect(summary.ca.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
    expect(summary.secrets).toEqual([
      {
        name: 'anthropic',
        placeholder: PLACEHOLDER,
        hosts: ['api.anthropic.test'],
        header: 'x-api-key',
        scheme: 'raw',
      },
    ])
    expect(summary.upstreamCa.certificates).toBe(1)
    const logged = proxy.logLines().map((l) => JSON.stringify(l))
    expect(logged.some((l) => l.includes('interception settings replaced'))).toBe(true)
    expect(logged.some(leaked)).toBe(false)
  })

  it('gives the stage working leaves, secrets and upstream trust', async () => {
    const state = proxy.running.context.interception
    expect(state.secrets.hasSecretFor('api.anthropic.test')).toBe(true)
    expect(
      state.secrets.substituteSecrets('api.anthropic.test', [['x-api-key', PLACEHOLDER]]).headers,
    ).toEqual([['x-api-key', SECRET_VALUE]])
    // A leaf from the pushed CA is accepted by a client that trusts only that CA.
    const leaf = await state.minter?.leafFor('api.anthropic.test')
    if (!leaf) throw new Error('no minter after PUT /interception')
    expect(
      await handshake({ key: leaf.key, cert: leaf.cert }, 'api.anthropic.test', [ca.cert]),
    ).toBe('authorized')
    // The upstream side trusts the operator's extra CA besides the system roots.
    const trust = state.upstreamCa()
    expect(trust?.length).toBe(tls.rootCertificates.length + 1)
    expect(
      await handshake(
        { key: upstream.key, cert: upstream.cert },
        'upstream.test',
        trust as string[],
      ),
    ).toBe('authorized')
  })

  it.each<[() => unknown, RegExp]>([
    [() => ({ ca: { cert: 'x', key: 'y' } }), /not a PEM certificate/],
    [() => settings({ ca: { cert: ca.cert, key: 'nope' } }), /not a PEM private key/],
    [
      () =>
        settings({
          secrets: [
            {
              name: 'a',
              placeholder: PLACEHOLDER,
              value: `${SECRET_VALUE}\n`,
              hosts: ['a.test'],
              header: 'x-a',
            },
          ],
        }),
      /control character/,
    ],
    [() => settings({ upstreamCa: 'no pem here' }), /holds no PEM certificate/],
    [() => settings({ extra: 1 }), /extra is not a field/],
    [() => `{"ca": "${SECRET_VALUE}`, /not valid JSON/],
  ])('refuses a bad body with 400 and keeps the settings in force (%#)', async (body, message) => {
    const before = proxy.running.context.interception.minter
    const r = await put(body())
    const text = await r.text()
    expect(r.status).toBe(400)
    expect(text).toMatch(message)
    expect(leaked(text)).toBe(false)
    expect(proxy.running.context.interception.minter).toBe(before)
  })

  it('clears everything with an empty body', async () => {
    expect((await put({})).status).toBe(200)
    const state = proxy.running.context.interception
    expect(state.minter).toBeUndefined()
    expect(state.secrets.size).toBe(0)
    expect(state.upstreamCa()).toBeUndefined()
  })
})

function handshake(
  server: { key: string | Buffer; cert: string | Buffer },
  servername: string,
  ca: string[],
): Promise<string> {
  return new Promise((resolve) => {
    const srv = tls.createServer(server, (s) => s.end())
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo
      const socket = tls.connect({ host: '127.0.0.1', port, servername, ca })
      const done = (result: string): void => {
        socket.destroy()
        srv.close()
        resolve(result)
      }
      socket.once('secureConnect', () => done('authorized'))
      socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
    })
  })
}
