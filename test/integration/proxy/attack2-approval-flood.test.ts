// Attack (second round): a flood of held connections for distinct names. Past
// the approvals queue's limit (DEFAULT_MAX_PENDING pending approvals), a new
// name is refused at once and logged, never queued or dialled; the ones
// already pending stay pending.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_MAX_PENDING } from '../../../src/proxy/approvals.js'
import { RawClient } from '../../helpers/clients.js'
import { dials, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const EXTRA = 4

let proxy: TestProxy

beforeAll(async () => {
  proxy = await startTestProxy({
    allow: [],
    policy: { onUnknown: 'ask', approvalTimeoutMs: 60_000 },
    listeners: ['http'],
  })
})

afterAll(async () => {
  await proxy?.close()
})

describe('the approvals queue under a flood of distinct names', () => {
  it('refuses names past the limit at once, logged, with nothing dialled', async () => {
    const dialsBefore = dials().length
    const since = proxy.mark()
    const clients: RawClient[] = []
    try {
      for (let i = 0; i < DEFAULT_MAX_PENDING + EXTRA; i++) {
        const client = await RawClient.connect(proxy.port('http'))
        client.write(`CONNECT n${i}.flood.test:443 HTTP/1.1\r\nHost: n${i}.flood.test:443\r\n\r\n`)
        clients.push(client)
      }
      const refused = await proxy.waitForEvents(EXTRA, (e) => e.action === 'deny', { since })
      expect(refused.map((e) => e.approval?.by)).toEqual(
        Array<string>(EXTRA).fill(
          `isorun: ${DEFAULT_MAX_PENDING} requests already wait for an approval`,
        ),
      )
      const answers = await Promise.all(
        refused.map((e) => {
          const i = Number(/^n(\d+)\./.exec(e.host)?.[1])
          return (clients[i] as RawClient).waitForText('\r\n\r\n')
        }),
      )
      for (const a of answers) expect(a.toString('latin1')).toMatch(/^HTTP\/1\.1 403 /)
      expect(proxy.running.context.approvals.pending()).toHaveLength(DEFAULT_MAX_PENDING)
      // The only connections made were the test's own, to the proxy.
      const proxyPort = proxy.port('http')
      expect(
        dials()
          .slice(dialsBefore)
          .filter((d) => d.port !== proxyPort),
      ).toEqual([])
    } finally {
      for (const c of clients) c.destroy()
    }
  })
})
