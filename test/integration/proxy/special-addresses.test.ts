// Names and literals that land in special-purpose ranges are refused before
// any dial unless the operator allowed the range. The proxy here has no
// allowance at all: loopback is refused although a loopback server is really
// listening (and must see no connection); private and link-local addresses
// are only ever decided, never dialled (the test's dial guard would refuse a
// non-loopback connect offline and records every attempt, and none may occur).

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  httpViaProxy,
  openTunnel,
  parseResponses,
  RawClient,
  socksConnect,
  type HttpResult,
} from '../../helpers/clients.js'
import { dials, loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startHttpEcho, type HttpEcho } from '../../helpers/upstreams.js'

let echo: HttpEcho
let strict: TestProxy // no special range allowed
let loopbackOnly: TestProxy // operator allows loopback, nothing else
let H: number

const SPECIAL_NAMES = {
  'loopback.test': '127.0.0.1',
  'private.test': '10.0.0.1',
  'metadata.test': '169.254.169.254',
  'cgnat.test': '100.64.0.1',
  'ula.test': 'fd00::1',
}

beforeAll(async () => {
  echo = await startHttpEcho()
  H = echo.port
  const allow = [
    `loopback.test:${H}`,
    `allowed.test:${H}`,
    `127.0.0.1:${H}`,
    `[::1]:${H}`,
    'private.test:80',
    'metadata.test:80',
    'cgnat.test:80',
    'ula.test:80',
    '10.0.0.1:80',
    '169.254.169.254:80',
  ]
  const resolve = loopbackNames(SPECIAL_NAMES)
  strict = await startTestProxy({
    allow,
    resolve,
    loopback: false,
    listeners: ['http', 'socks'],
  })
  loopbackOnly = await startTestProxy({ allow, resolve, listeners: ['http'] })
})

afterAll(async () => {
  await strict?.close()
  await loopbackOnly?.close()
  await echo?.close()
})

function expectSpecial(res: HttpResult, host: string, port: number): void {
  expect(res.status).toBe(403)
  expect(res.headers['x-isorun-error']).toBe('blocked-by-policy')
  expect(res.body).toContain(`host: ${host}\n`)
  expect(res.body).toContain(`port: ${port}\n`)
  expect(res.body).toContain('reason: special-address')
}

/** Nothing in this process tried to connect to `address` since `tries`. */
function expectNoDial(tries: number, address: string): void {
  expect(
    dials()
      .slice(tries)
      .filter((d) => d.host === address),
  ).toEqual([])
}

describe('loopback without the operator allowance', () => {
  it('a name that resolves to 127.0.0.1 is refused on every path, and the server sees nothing', async () => {
    const before = echo.connections()
    const since = strict.mark()

    const viaHttp = await httpViaProxy(strict.port('http'), `http://loopback.test:${H}/`)
    expectSpecial(viaHttp, 'loopback.test', H)
    // Also a name that the allow list names plainly.
    expectSpecial(
      await httpViaProxy(strict.port('http'), `http://allowed.test:${H}/`),
      'allowed.test',
      H,
    )

    const tunnel = await openTunnel(strict.port('http'), `loopback.test:${H}`)
    expect(tunnel.status).toBe(403)
    expect(tunnel.body).toContain('reason: special-address')

    const socks = await socksConnect(strict.port('socks'), 'loopback.test', H)
    expect(socks.code).toBe(0x02)
    socks.socket.destroy()

    const events = await strict.waitForEvents(4, () => true, { since })
    for (const e of events) {
      expect(e).toMatchObject({ action: 'deny', reason: 'special-address', port: H })
      expect(e.detail).toMatch(/127\.0\.0\.1 is in 127\.0\.0\.0\/8/)
      expect(e.address).toBeUndefined()
    }
    expect(events.map((e) => e.protocol).sort()).toEqual(['connect', 'http', 'http', 'socks'])
    expect(echo.connections()).toBe(before)
  })

  it.each(['127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '127.1', '[::ffff:7f00:1]', '[::1]'])(
    'the literal %s is refused as special-address, with a matching rule and without a dial',
    async (spelling) => {
      const before = echo.connections()
      const client = await RawClient.connect(strict.port('http'))
      client.write(`GET http://${spelling}:${H}/ HTTP/1.1\r\nHost: ${spelling}:${H}\r\n\r\n`)
      await client.waitFor((d) => parseResponses(d).length > 0)
      client.destroy()
      const res = parseResponses(client.data)[0] as HttpResult
      expectSpecial(res, spelling === '[::1]' ? '::1' : '127.0.0.1', H)

      const tunnel = await openTunnel(strict.port('http'), `${spelling}:${H}`)
      expect(tunnel.status).toBe(403)
      expect(tunnel.body).toContain('reason: special-address')
      expect(echo.connections()).toBe(before)
    },
  )
})

describe('private, link-local, CGNAT and ULA addresses are decided without dialling', () => {
  it.each([
    ['private.test', '10.0.0.1', '10.0.0.0/8'],
    ['metadata.test', '169.254.169.254', '169.254.0.0/16'],
    ['cgnat.test', '100.64.0.1', '100.64.0.0/10'],
    ['ula.test', 'fd00::1', 'fc00::/7'],
  ])('%s (resolves to %s) is refused on every path', async (name, address, range) => {
    const tries = dials().length
    const since = strict.mark()
    expectSpecial(await httpViaProxy(strict.port('http'), `http://${name}/`), name, 80)
    const tunnel = await openTunnel(strict.port('http'), `${name}:80`)
    expect(tunnel.status).toBe(403)
    const socks = await socksConnect(strict.port('socks'), name, 80)
    expect(socks.code).toBe(0x02)
    socks.socket.destroy()
    const events = await strict.waitForEvents(3, (e) => e.host === name, { since })
    for (const e of events) {
      expect(e).toMatchObject({ action: 'deny', reason: 'special-address' })
      expect(e.detail).toContain(`${address} is in ${range}`)
      expect(e.address).toBeUndefined()
    }
    expectNoDial(tries, address)
  })

  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['10.1', '10.0.0.1'],
    ['169.254.169.254', '169.254.169.254'],
    ['2852039166', '169.254.169.254'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['[::ffff:a9fe:a9fe]', '169.254.169.254'],
  ])('the literal %s is refused even with a rule naming it', async (spelling, address) => {
    const tries = dials().length
    const client = await RawClient.connect(strict.port('http'))
    client.write(`GET http://${spelling}/latest/meta-data/ HTTP/1.1\r\nHost: ${spelling}\r\n\r\n`)
    await client.waitFor((d) => parseResponses(d).length > 0)
    client.destroy()
    expectSpecial(parseResponses(client.data)[0] as HttpResult, address, 80)
    const socks = await socksConnect(strict.port('socks'), spelling.replace(/^\[|\]$/g, ''), 80)
    expect(socks.code).toBe(0x02)
    socks.socket.destroy()
    expectNoDial(tries, address)
  })

  it('allowing loopback does not open the other ranges', async () => {
    const tries = dials().length
    // Loopback now works …
    const ok = await httpViaProxy(loopbackOnly.port('http'), `http://loopback.test:${H}/ok`)
    expect(ok.status).toBe(200)
    // … but the metadata address is still refused.
    expectSpecial(
      await httpViaProxy(loopbackOnly.port('http'), 'http://metadata.test/'),
      'metadata.test',
      80,
    )
    expectNoDial(tries, '169.254.169.254')
  })
})
