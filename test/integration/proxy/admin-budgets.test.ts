// Budgets in the admin API: GET /budgets and /metrics show each limit's usage
// as the ledger counts it (the accounting stage charges the ledger; here the
// test does), and the usage survives a policy update that keeps the pattern.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

let proxy: TestProxy
let admin: string
const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` }

beforeAll(async () => {
  proxy = await startTestProxy({
    allow: ['api.test', '*.example.test'],
    policy: {
      limits: [
        { pattern: 'api.test', upload: 1000, requests: 2, from: 'test' },
        { pattern: '*.example.test', download: 5000, windowMs: 3_600_000, from: 'test' },
      ],
    },
    listeners: ['admin'],
  })
  admin = `http://127.0.0.1:${proxy.port('admin')}`
})

afterAll(async () => {
  await proxy?.close()
})

describe('budgets in the admin API', () => {
  it('GET /budgets and /metrics show usage per limit and per destination', async () => {
    const ledger = proxy.running.context.budgets
    ledger.charge({ host: 'api.test', port: 443 }, { up: 1200, down: 10, requests: 1 })
    ledger.charge({ host: 'a.example.test', port: 443 }, { down: 300, requests: 1 })
    const body = (await (await fetch(`${admin}/budgets`, { headers: auth })).json()) as {
      budgets: unknown[]
      destinations: unknown[]
    }
    expect(body.budgets).toEqual([
      {
        pattern: 'api.test',
        up: 1200,
        down: 10,
        requests: 1,
        limits: { upload: 1000, requests: 2 },
        exceeded: true,
      },
      {
        pattern: '*.example.test',
        up: 0,
        down: 300,
        requests: 1,
        limits: { download: 5000, windowMs: 3_600_000 },
        exceeded: false,
      },
    ])
    expect(body.destinations).toEqual([
      { destination: 'api.test:443', pattern: 'api.test', up: 1200, down: 10, requests: 1 },
      {
        destination: 'a.example.test:443',
        pattern: '*.example.test',
        up: 0,
        down: 300,
        requests: 1,
      },
    ])
    const metrics = await (await fetch(`${admin}/metrics`, { headers: auth })).text()
    expect(metrics).toContain('isorun_budget_bytes{pattern="api.test",direction="up"} 1200')
    expect(metrics).toContain('isorun_budget_requests{pattern="*.example.test"} 1')
    expect(metrics).toContain('isorun_budget_exceeded{pattern="api.test"} 1')
    expect(metrics).toContain('isorun_budget_exceeded{pattern="*.example.test"} 0')
  })

  it('a policy update that keeps a pattern keeps its usage; limits are validated', async () => {
    const put = (spec: unknown) =>
      fetch(`${admin}/policy`, {
        method: 'PUT',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ spec }),
      })
    const ok = await put({
      name: 'next',
      mode: 'allow-list',
      allow: ['api.test'],
      limits: [{ pattern: 'api.test', upload: 5000 }],
    })
    expect(ok.status).toBe(200)
    const { budgets } = (await (await fetch(`${admin}/budgets`, { headers: auth })).json()) as {
      budgets: { pattern: string; up: number; exceeded: boolean }[]
    }
    expect(budgets).toEqual([
      expect.objectContaining({ pattern: 'api.test', up: 1200, exceeded: false }),
    ])
    const bad = await put({
      name: 'bad',
      mode: 'allow-list',
      limits: [{ pattern: 'api.test', upload: 'lots' }],
    })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(
      /limits\[0\]: upload/,
    )
  })
})
