// Approvals through a real proxy: DNS questions for names no rule allows are
// held (a real approval request, end to end), the admin API long-polls and
// answers them, and every answer is logged with who gave it. Once lets that
// query through and the next one asks again; sandbox adds a live rule; deny
// and timeout refuse; a late answer does not hang the resolver; a deny rule
// is never asked about; 50 concurrent approvals are all answered correctly.

import { Resolver } from 'node:dns/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, freePort, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import type { PendingApprovalView } from '../../../src/proxy/approvals.js'

let proxy: TestProxy
let quick: TestProxy
let admin: string
let dnsPort: number
let quickDns: number

const ANSWER = '127.0.0.42'
const auth = { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' }

beforeAll(async () => {
  dnsPort = await freePort()
  proxy = await startTestProxy({
    allow: ['known.test'],
    deny: ['denied.test'],
    policy: { onUnknown: 'ask', approvalTimeoutMs: 60_000 },
    listeners: ['dns', 'admin'],
    ports: { dns: dnsPort },
    // The resolver below gives up after 20 s; answers come well before.
    extra: { dnsAnswerAddress: ANSWER, dnsApprovalWaitMs: 15_000 },
  })
  admin = `http://127.0.0.1:${proxy.port('admin')}`
  quickDns = await freePort()
  quick = await startTestProxy({
    policy: { onUnknown: 'ask', approvalTimeoutMs: 60_000 },
    listeners: ['dns', 'admin'],
    ports: { dns: quickDns },
    // A DNS wait much shorter than the approval's: the resolver gets REFUSED, the approval stays.
    extra: { dnsAnswerAddress: ANSWER, dnsApprovalWaitMs: 100 },
  })
})

afterAll(async () => {
  await proxy?.close()
  await quick?.close()
})

function resolverFor(port: number): Resolver {
  const r = new Resolver({ timeout: 20_000, tries: 1 })
  r.setServers([`127.0.0.1:${port}`])
  return r
}

function outcome(p: Promise<string[]>): Promise<string> {
  return p.then(
    (a) => a.join(','),
    (err: NodeJS.ErrnoException) => err.code ?? String(err),
  )
}

async function poll(
  base: string,
  after: number,
): Promise<{ version: number; pending: PendingApprovalView[]; liveRules: { rule: string }[] }> {
  const res = await fetch(`${base}/approvals?after=${after}&wait=20000`, { headers: auth })
  expect(res.status).toBe(200)
  return (await res.json()) as {
    version: number
    pending: PendingApprovalView[]
    liveRules: { rule: string }[]
  }
}

/** Long-polls until a pending approval for `host` shows up. */
async function pendingFor(base: string, host: string): Promise<PendingApprovalView> {
  let after = -1
  for (;;) {
    const { version, pending } = await poll(base, after)
    const hit = pending.find((p) => p.host === host && p.waiting > 0)
    if (hit) return hit
    after = version
  }
}

function answer(base: string, id: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${base}/approvals/${id}`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify(body),
  })
}

describe('approvals over DNS and the admin API', () => {
  it('once: the held query is answered; the event says who allowed it; the next query asks again', async () => {
    const since = proxy.mark()
    const held = outcome(resolverFor(dnsPort).resolve4('new.test'))
    const pending = await pendingFor(admin, 'new.test')
    expect(pending).toMatchObject({ protocol: 'dns', port: 0, rule: 'new.test', waiting: 1 })
    const res = await answer(admin, pending.id, { answer: 'once', by: 'test:alice' })
    expect(res.status).toBe(200)
    expect(await held).toBe(ANSWER)
    const event = await proxy.waitForEvent((e) => e.host === 'new.test', { since })
    expect(event).toMatchObject({
      action: 'allow',
      reason: 'allowed-by-approval',
      approval: { id: pending.id, answer: 'once', by: 'test:alice' },
    })
    const logged = proxy
      .logLines()
      .find((l) => l.msg === 'approval answered' && l.approval === pending.id)
    expect(logged).toMatchObject({ answer: 'once', by: 'test:alice', host: 'new.test' })

    const again = outcome(resolverFor(dnsPort).resolve4('new.test'))
    const next = await pendingFor(admin, 'new.test')
    expect(next.id).not.toBe(pending.id)
    await answer(admin, next.id, { answer: 'deny', by: 'test:bob' })
    expect(await again).toBe('EREFUSED')
    expect(await proxy.waitForEvent((e) => e.approval?.id === next.id, { since })).toMatchObject({
      action: 'deny',
      reason: 'approval-denied',
      approval: { answer: 'deny', by: 'test:bob' },
    })
  })

  it('sandbox: a live rule answers later queries at once; it shows in GET /policy and /approvals', async () => {
    const held = outcome(resolverFor(dnsPort).resolve4('kept.test'))
    const pending = await pendingFor(admin, 'kept.test')
    const res = await answer(admin, pending.id, {
      answer: 'sandbox',
      by: 'test:carol',
      ttlMs: 600_000,
    })
    expect(await res.json()).toMatchObject({ answer: 'sandbox', rule: 'kept.test' })
    expect(await held).toBe(ANSWER)
    expect(await outcome(resolverFor(dnsPort).resolve4('kept.test'))).toBe(ANSWER)
    const policy = (await (await fetch(`${admin}/policy`, { headers: auth })).json()) as {
      spec: { allow: { rule: string; from: string }[] }
    }
    expect(policy.spec.allow).toContainEqual({ rule: 'kept.test', from: 'approval' })
    const { liveRules } = await poll(admin, -1)
    expect(liveRules).toMatchObject([{ rule: 'kept.test', by: 'test:carol' }])
  })

  it('a deny rule is refused at once, never asked about', async () => {
    const { version } = await poll(admin, -1)
    expect(await outcome(resolverFor(dnsPort).resolve4('denied.test'))).toBe('EREFUSED')
    const after = await fetch(`${admin}/approvals?after=${version}&wait=0`, { headers: auth })
    expect(((await after.json()) as { pending: unknown[] }).pending).toEqual([])
  })

  it('bad answers are 400/404 and change nothing', async () => {
    expect((await answer(admin, 'apr_unknown', { answer: 'once', by: 'x' })).status).toBe(404)
    const held = outcome(resolverFor(dnsPort).resolve4('checked.test'))
    const pending = await pendingFor(admin, 'checked.test')
    expect((await answer(admin, pending.id, { answer: 'always', by: 'x' })).status).toBe(400)
    expect((await answer(admin, pending.id, { answer: 'once' })).status).toBe(400)
    expect(
      (await fetch(`${admin}/approvals/${pending.id}`, { method: 'POST', body: '{}' })).status,
    ).toBe(401)
    await answer(admin, pending.id, { answer: 'deny', by: 'x' })
    expect(await held).toBe('EREFUSED')
  })

  it('50 concurrent approvals are all answered correctly, and nothing stays held', async () => {
    const names = Array.from({ length: 50 }, (_, i) => `n${i}.burst.test`)
    const results = names.map((n) => outcome(resolverFor(dnsPort).resolve4(n)))
    let after = -1
    let pending: PendingApprovalView[] = []
    while (pending.filter((p) => p.host.endsWith('.burst.test') && p.waiting > 0).length < 50) {
      const r = await poll(admin, after)
      after = r.version
      pending = r.pending
    }
    await Promise.all(
      pending
        .filter((p) => p.host.endsWith('.burst.test'))
        .map((p) =>
          answer(admin, p.id, {
            answer: Number(p.host.slice(1).split('.')[0]) % 2 ? 'deny' : 'once',
            by: 'burst',
          }),
        ),
    )
    const got = await Promise.all(results)
    got.forEach((r, i) => expect(r, names[i]).toBe(i % 2 ? 'EREFUSED' : ANSWER))
    expect(proxy.running.context.approvals.size).toBe(0)
    expect(proxy.running.context.approvals.held).toBe(0)
  })
})

describe('a DNS wait shorter than the approval', () => {
  it('the resolver gets REFUSED, not a hang; the approval stays and a later answer serves the retry', async () => {
    const since = quick.mark()
    const base = `http://127.0.0.1:${quick.port('admin')}`
    expect(await outcome(resolverFor(quickDns).resolve4('late.test'))).toBe('EREFUSED')
    expect(await quick.waitForEvent((e) => e.host === 'late.test', { since })).toMatchObject({
      action: 'deny',
      reason: 'approval-timeout',
    })
    const { pending } = await poll(base, -1)
    const late = pending.find((p) => p.host === 'late.test')
    expect(late).toMatchObject({ waiting: 0 })
    await answer(base, late!.id, { answer: 'sandbox', by: 'test:late' })
    expect(await outcome(resolverFor(quickDns).resolve4('late.test'))).toBe(ANSWER)
  })
})

describe('timeout', () => {
  it('nobody answering within approvalTimeoutMs is a deny', async () => {
    const port = await freePort()
    const p = await startTestProxy({
      policy: { onUnknown: 'ask', approvalTimeoutMs: 200 },
      listeners: ['dns'],
      ports: { dns: port },
      extra: { dnsAnswerAddress: ANSWER },
    })
    try {
      expect(await outcome(resolverFor(port).resolve4('slow.test'))).toBe('EREFUSED')
      expect(await p.waitForEvent((e) => e.host === 'slow.test')).toMatchObject({
        reason: 'approval-timeout',
        approval: { answer: 'timeout' },
      })
      expect(p.running.context.approvals.size).toBe(0)
    } finally {
      await p.close()
    }
  })
})
