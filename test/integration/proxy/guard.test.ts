// No silent failures on the data path: what a tunnel or request handler throws
// (a bug; here a fault injected into the proxy's resolver, which every
// connection consults) closes that connection, is logged as an operational
// event, is counted in /metrics, and still leaves the decision line of the
// connection's target. On every ingress: CONNECT, SOCKS5, transparent TLS,
// absolute-form HTTP. Afterwards the proxy serves as before.

import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Resolver } from '../../../src/proxy/resolver.js'
import { type TestCerts, testCerts } from '../../helpers/certs.js'
import { httpViaProxy, RawClient, socksRequest } from '../../helpers/clients.js'
import { ADMIN_TOKEN, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startUpstreams, type Upstreams } from '../../helpers/upstreams.js'

let certs: TestCerts
let up: Upstreams
let proxy: TestProxy

beforeAll(async () => {
  certs = await testCerts()
  up = await startUpstreams()
  proxy = await startTestProxy({
    allow: [`allowed.test:${up.tls.port}`, `allowed.test:${up.http.port}`],
    resolve: loopbackNames(),
    listeners: ['http', 'socks', 'tls', 'admin'],
    extra: { transparentPorts: { tls: up.tls.port } },
  })
})

afterAll(async () => {
  await proxy?.close()
  await up?.close()
})

/** Makes every address lookup of the proxy throw, as a bug would, while `fn` runs. */
async function withBrokenResolver(fn: () => Promise<void>): Promise<void> {
  const resolver = proxy.running.context.resolver as Resolver & Record<string, unknown>
  const original = resolver.resolveLocal
  resolver.resolveLocal = () => {
    throw new TypeError('injected fault')
  }
  try {
    await fn()
  } finally {
    resolver.resolveLocal = original
  }
}

async function errorsCounted(): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${proxy.port('admin')}/metrics`, {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
  })
  const m = /^isorun_data_path_errors_total (\d+)$/m.exec(await r.text())
  if (!m) throw new Error('no isorun_data_path_errors_total in /metrics')
  return Number(m[1])
}

/** Opens a connection that reaches the resolver on the given ingress; resolves once it is closed. */
const ingresses: Record<string, () => Promise<void>> = {
  connect: async () => {
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT allowed.test:${up.tls.port} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`)
    await client.waitForClose()
    expect(client.text).toBe('')
  },
  socks: async () => {
    const client = await RawClient.connect(proxy.port('socks'))
    client.write(socksRequest('allowed.test', up.tls.port))
    await client.waitForClose()
    expect(client.data).toEqual(Buffer.from([0x05, 0x00])) // the method choice, and no reply
  },
  tls: async () => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: proxy.port('tls'),
      servername: 'allowed.test',
      ca: certs.ca,
    })
    const closed = await new Promise<string>((resolve) => {
      socket.once('secureConnect', () => resolve('handshake completed'))
      socket.once('error', (err) => resolve(err.message))
    })
    expect(closed).not.toBe('handshake completed')
    socket.destroy()
  },
  http: async () => {
    await expect(
      httpViaProxy(proxy.port('http'), `http://allowed.test:${up.http.port}/broken`),
    ).rejects.toThrow()
  },
}

describe('an error the data path did not expect', () => {
  it.each(Object.keys(ingresses))(
    'on %s: closes the connection, logs it, counts it, and still writes the decision line',
    async (ingress) => {
      const before = await errorsCounted()
      const since = proxy.mark()
      const linesBefore = proxy.logLines().length
      await withBrokenResolver(ingresses[ingress] as () => Promise<void>)
      const event = await proxy.waitForEvent((e) => e.error !== undefined, { since })
      expect(event).toMatchObject({
        host: 'allowed.test',
        error: 'internal error: injected fault',
      })
      expect(await errorsCounted()).toBe(before + 1)
      const operational = proxy
        .logLines()
        .slice(linesBefore)
        .filter((l) => l.msg === 'data path error; the connection was closed')
      expect(operational).toHaveLength(1)
      expect(operational[0]).toMatchObject({ level: 'error', error: 'injected fault' })
    },
  )

  it('leaves the proxy serving as before', async () => {
    const r = await httpViaProxy(proxy.port('http'), `http://allowed.test:${up.http.port}/after`)
    expect(r.status).toBe(200)
    expect(await errorsCounted()).toBe(Object.keys(ingresses).length)
  })
})
