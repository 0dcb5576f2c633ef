// The approvals module on its own: answers reach every held request, identical
// requests share one approval, timeouts deny, `sandbox` answers add a live rule
// (with a TTL) that survives policy replacement, and memory stays bounded.

import { afterEach, describe, expect, it, vi } from 'vitest'
import { compilePolicy, decide, type PolicySpec } from '../../../src/policy/index.js'
import { Approvals, decisionAfterApproval, ruleFor } from '../../../src/proxy/approvals.js'
import { PolicyHolder } from '../../../src/proxy/context.js'

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined }
const SPEC: PolicySpec = {
  name: 'ask',
  mode: 'allow-list',
  onUnknown: 'ask',
  approvalTimeoutMs: 60_000,
  allow: [{ rule: 'known.test', from: 'ask' }],
  deny: [],
}

function setup(
  extra: { maxPending?: number; maxWaiters?: number; spec?: Partial<PolicySpec> } = {},
) {
  const holder = new PolicyHolder(compilePolicy({ ...SPEC, ...extra.spec }))
  const approvals = new Approvals({
    policy: holder,
    operator: {},
    log: silent,
    ...(extra.maxPending !== undefined ? { maxPending: extra.maxPending } : {}),
    ...(extra.maxWaiters !== undefined ? { maxWaiters: extra.maxWaiters } : {}),
  })
  return { holder, approvals }
}

const req = (host: string, port = 443) => ({ protocol: 'connect' as const, host, port })

afterEach(() => vi.useRealTimers())

describe('Approvals', () => {
  it('once: every held identical request gets it; the next request asks again', async () => {
    const { approvals } = setup()
    const first = approvals.ask(req('new.test'))
    const second = approvals.ask(req('new.test'))
    const [pending] = approvals.pending()
    expect(approvals.pending()).toHaveLength(1)
    expect(pending).toMatchObject({ host: 'new.test', port: 443, rule: 'new.test', waiting: 2 })
    approvals.answer(pending!.id, { answer: 'once', by: 'test:alice' })
    expect(await first).toMatchObject({ id: pending!.id, answer: 'once', by: 'test:alice' })
    expect(await second).toMatchObject({ answer: 'once' })
    expect(approvals.size).toBe(0)
    void approvals.ask(req('new.test'))
    expect(approvals.pending()[0]?.id).not.toBe(pending!.id)
    approvals.close()
  })

  it('different ports are different approvals', () => {
    const { approvals } = setup()
    void approvals.ask(req('new.test', 443))
    void approvals.ask(req('new.test', 8443))
    expect(approvals.pending().map((p) => p.rule)).toEqual(['new.test', 'new.test:8443'])
    approvals.close()
  })

  it('sandbox: adds a live rule that decide() allows, kept across policy replacement, gone after its TTL', async () => {
    vi.useFakeTimers()
    const { holder, approvals } = setup()
    const held = approvals.ask(req('new.test'))
    const id = approvals.pending()[0]!.id
    const result = approvals.answer(id, { answer: 'sandbox', by: 'cli:bob', ttlMs: 600_000 })
    expect(result).toMatchObject({ answer: 'sandbox', rule: 'new.test' })
    expect(await held).toMatchObject({ answer: 'sandbox', rule: 'new.test' })
    expect(decide(req('new.test'), holder.current)).toMatchObject({
      action: 'allow',
      rule: 'new.test',
      from: 'approval',
    })
    // The runner resends the policy: the live rule stays.
    holder.replace(compilePolicy(approvals.withLiveRules(SPEC)))
    expect(decide(req('new.test'), holder.current).action).toBe('allow')
    vi.advanceTimersByTime(600_001)
    expect(decide(req('new.test'), holder.current)).toMatchObject({ action: 'deny', ask: true })
    expect(approvals.liveRules()).toEqual([])
  })

  it('deny and timeout refuse; a timeout is the policy approvalTimeoutMs', async () => {
    vi.useFakeTimers()
    const { approvals } = setup({ spec: { approvalTimeoutMs: 5000 } })
    const denied = approvals.ask(req('a.test'))
    approvals.answer(approvals.pending()[0]!.id, { answer: 'deny', by: 'sdk' })
    expect(await denied).toMatchObject({ answer: 'deny', by: 'sdk' })
    const timed = approvals.ask(req('b.test'))
    vi.advanceTimersByTime(5001)
    expect(await timed).toMatchObject({ answer: 'timeout' })
    expect(approvals.size).toBe(0)
  })

  it('a waiter that leaves (abort, or its own shorter wait) leaves the approval pending', async () => {
    const { approvals } = setup()
    const controller = new AbortController()
    const held = approvals.ask(req('a.test'), { signal: controller.signal })
    controller.abort()
    expect(await held).toMatchObject({ answer: 'deny', by: 'isorun: the client left' })
    expect(await approvals.ask(req('a.test'), { waitMs: 10 })).toMatchObject({ answer: 'timeout' })
    expect(approvals.pending()).toMatchObject([{ host: 'a.test', waiting: 0 }])
    expect(approvals.held).toBe(0)
    approvals.close()
  })

  it('bounded: past maxPending or maxWaiters a request is refused at once', async () => {
    const { approvals } = setup({ maxPending: 2, maxWaiters: 3 })
    void approvals.ask(req('a.test'))
    void approvals.ask(req('b.test'))
    expect(await approvals.ask(req('c.test'))).toMatchObject({ answer: 'deny' })
    void approvals.ask(req('a.test'))
    expect(await approvals.ask(req('b.test'))).toMatchObject({ answer: 'deny' })
    expect(approvals.size).toBe(2)
    approvals.close()
  })

  it('answers are checked', () => {
    const { approvals } = setup()
    void approvals.ask(req('a.test'))
    const id = approvals.pending()[0]!.id
    expect(() => approvals.answer('apr_nope', { answer: 'once', by: 'x' })).toThrow(
      /no pending approval/,
    )
    expect(() => approvals.answer(id, { answer: 'maybe' as 'once', by: 'x' })).toThrow(
      /answer must be/,
    )
    expect(() => approvals.answer(id, { answer: 'once', by: 'x', ttlMs: 5 })).toThrow(/TTL/)
    approvals.close()
  })

  it('a long poll returns when the pending set changes', async () => {
    const { approvals } = setup()
    const { version } = await approvals.poll(-1, 0)
    const polled = approvals.poll(version, 30_000)
    void approvals.ask(req('a.test'))
    const result = await polled
    expect(result.version).toBeGreaterThan(version)
    expect(result.pending).toMatchObject([{ host: 'a.test' }])
    approvals.close()
  })

  it('50 concurrent approvals are all answered correctly', async () => {
    const { approvals } = setup()
    const held = Array.from({ length: 50 }, (_, i) => approvals.ask(req(`h${i}.test`)))
    for (const p of approvals.pending())
      approvals.answer(p.id, { answer: Number(p.host.slice(1, -5)) % 2 ? 'deny' : 'once', by: 't' })
    const outcomes = await Promise.all(held)
    outcomes.forEach((o, i) => expect(o.answer).toBe(i % 2 ? 'deny' : 'once'))
  })

  it('decisionAfterApproval turns an ask into allow or deny', () => {
    const { holder } = setup()
    const asked = decide(req('x.test'), holder.current)
    expect(decisionAfterApproval(asked, { id: 'apr_1', answer: 'once', by: 'a' })).toMatchObject({
      action: 'allow',
      reason: 'allowed-by-approval',
      rule: 'approval:apr_1',
    })
    expect(decisionAfterApproval(asked, { id: 'apr_1', answer: 'timeout', by: 't' }).reason).toBe(
      'approval-timeout',
    )
    expect(ruleFor('db.test', 5432)).toBe('db.test:5432')
    expect(ruleFor('2001:db8::1', 22)).toBe('[2001:db8::1]:22')
  })
})
