// The budget ledger: lifetime and rolling-window usage per limit pattern,
// check (may a new request start) and charge (must this connection be cut).

import { describe, expect, it } from 'vitest'
import { compilePolicy, type LimitSource } from '../../../src/policy/index.js'
import { BudgetLedger, budgetRefusal } from '../../../src/proxy/budgets.js'
import { budgetRefusalReply } from '../../../src/proxy/refusal.js'

function ledger(limits: LimitSource[]) {
  let now = 1_000_000
  const policy = compilePolicy({ name: 'p', mode: 'allow-all', allow: [], deny: [], limits })
  const l = new BudgetLedger(
    () => policy,
    () => now,
  )
  return { l, tick: (ms: number) => (now += ms) }
}

const api = { host: 'api.test', port: 443 }
const apiEx = { host: 'api.ex.test', port: 443 }

describe('BudgetLedger', () => {
  it('destinations without a limit are not counted', () => {
    const { l } = ledger([{ pattern: 'api.test', upload: 10, from: 'p' }])
    expect(l.check({ host: 'other.test', port: 443 })).toEqual({ ok: true })
    expect(l.charge({ host: 'other.test', port: 443 }, { up: 100 })).toEqual({ over: false })
  })

  it('upload: a charge past the limit is over (cut); then new ones are refused', () => {
    const { l } = ledger([{ pattern: 'api.test', upload: 100, from: 'p' }])
    expect(l.check(api)).toMatchObject({ ok: true, remaining: { upload: 100 } })
    expect(l.charge(api, { up: 60 })).toMatchObject({ over: false })
    expect(l.charge(api, { up: 40 })).toMatchObject({ over: false, budget: { exceeded: true } })
    expect(l.check(api)).toMatchObject({ ok: false, exceeded: 'upload', budget: { up: 100 } })
    expect(l.charge(api, { up: 1 })).toMatchObject({ over: true, exceeded: 'upload' })
  })

  it('requests: N are allowed, the next is refused', () => {
    const { l } = ledger([{ pattern: '*.ex.test', requests: 2, from: 'p' }])
    for (let i = 0; i < 2; i++) {
      expect(l.check(apiEx).ok).toBe(true)
      l.charge(apiEx, { requests: 1 })
    }
    expect(l.check({ host: 'x.ex.test', port: 80 })).toMatchObject({
      ok: false,
      exceeded: 'requests',
    })
  })

  it('a rolling window frees room as it moves', () => {
    const { l, tick } = ledger([
      { pattern: 'api.test', download: 100, windowMs: 60_000, from: 'p' },
    ])
    l.charge(api, { down: 100 })
    expect(l.check(api).ok).toBe(false)
    tick(30_000)
    expect(l.check(api).ok).toBe(false)
    tick(31_000)
    expect(l.check(api)).toMatchObject({ ok: true, budget: { down: 0 } })
  })

  it('usage per budget and per destination', () => {
    const { l } = ledger([{ pattern: '*.ex.test', upload: 1000, from: 'p' }])
    l.charge(apiEx, { up: 5, down: 7, requests: 1 })
    l.charge({ host: 'b.ex.test', port: 80 }, { up: 1 })
    expect(l.budgets()).toEqual([
      {
        pattern: '*.ex.test',
        up: 6,
        down: 7,
        requests: 1,
        limits: { upload: 1000 },
        exceeded: false,
      },
    ])
    expect(l.perDestination()).toEqual([
      { destination: 'api.ex.test:443', pattern: '*.ex.test', up: 5, down: 7, requests: 1 },
      { destination: 'b.ex.test:80', pattern: '*.ex.test', up: 1, down: 0, requests: 0 },
    ])
  })

  it('the refusal is a budget-exceeded decision and a 429 with the usage', () => {
    const { l } = ledger([{ pattern: 'api.test', upload: 1024, windowMs: 3_600_000, from: 'p' }])
    l.charge(api, { up: 2048 })
    const check = l.check(api)
    if (check.ok) throw new Error('expected a refusal')
    const decision = budgetRefusal(
      {
        action: 'allow',
        reason: 'allowed-by-mode',
        rule: null,
        from: null,
        host: 'api.test',
        port: 443,
      },
      check.budget,
      check.exceeded,
    )
    expect(decision).toMatchObject({
      action: 'deny',
      reason: 'budget-exceeded',
      rule: 'api.test',
      detail: 'upload 2.0 KiB of 1.0 KiB in the last 1h',
    })
    const reply = budgetRefusalReply(decision, check.budget, 'p')
    expect(reply.status).toBe(429)
    expect(reply.headers).toMatchObject({
      'X-Isorun-Error': 'budget-exceeded',
      'X-Isorun-Budget-Used': 'up=2048; down=0; requests=0',
      'Retry-After': '60',
    })
    expect(reply.body).toContain('used: upload 2048 of 1024 bytes')
  })
})
