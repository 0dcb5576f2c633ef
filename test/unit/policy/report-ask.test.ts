// Report mode and `onUnknown: ask` in decide(): report mode allows what
// allow-all allows and carries the rules' verdict as wouldDeny; ask marks only
// "no rule allows this" refusals, never a deny rule, a special address or a
// protocol refusal.

import { describe, expect, it } from 'vitest'
import {
  compilePolicy,
  decide,
  describeDecision,
  PolicyError,
  type EgressRequest,
  type PolicySpec,
} from '../../../src/policy/index.js'

function policy(
  extra: Omit<Partial<PolicySpec>, 'allow' | 'deny'> & { allow?: string[]; deny?: string[] },
) {
  const { allow = [], deny = [], ...rest } = extra
  return compilePolicy(
    {
      name: 'test',
      mode: 'allow-list',
      ...rest,
      allow: allow.map((rule) => ({ rule, from: 'test' })),
      deny: deny.map((rule) => ({ rule, from: 'test' })),
    },
    { allowSpecial: [] },
  )
}

const req = (host: string, port = 443, extra: Partial<EgressRequest> = {}): EgressRequest => ({
  protocol: 'connect',
  host,
  port,
  ...extra,
})

describe('report mode', () => {
  const report = policy({
    mode: 'report',
    allow: ['allowed.test', 'api.test', 'tcp:ssh.test:22'],
    deny: ['denied.test', '8.8.0.0/16'],
    endpoints: [
      {
        host: 'api.test',
        from: 'test',
        rules: [{ methods: ['GET'], path: '/ok/**', action: 'allow' }],
      },
    ],
  })

  it('allows a host the rules allow, with no would-deny', () => {
    const d = decide(req('allowed.test'), report)
    expect(d).toMatchObject({ action: 'allow', reason: 'allowed-by-rule', rule: 'allowed.test' })
    expect(d.wouldDeny).toBeUndefined()
  })

  it.each([
    ['other.test', 'not-in-allow-list', null],
    ['denied.test', 'denied-by-rule', 'denied.test'],
  ])('allows %s and records that the rules would refuse it (%s)', (host, reason, rule) => {
    const d = decide(req(host), report)
    expect(d).toMatchObject({ action: 'allow', reason: 'allowed-by-mode', rule: 'mode:report' })
    expect(d.wouldDeny).toEqual({ reason, rule, from: rule ? 'test' : null })
    expect(describeDecision(d)).toContain(`report mode: the rules would refuse it (${reason}`)
  })

  it('a deny rule on a resolved address is a would-deny too, not a refusal', () => {
    // Decided only: nothing is dialled.
    const d = decide(req('allowed.test', 443, { resolved: ['8.8.8.8'] }), report)
    expect(d).toMatchObject({
      action: 'allow',
      wouldDeny: { reason: 'denied-by-rule', rule: '8.8.0.0/16', detail: 'resolves to 8.8.8.8' },
    })
  })

  it.each([
    ['169.254.169.254', 80],
    ['127.0.0.1', 443],
    ['10.0.0.5', 443],
  ])('the special-address defence still refuses %s', (host, port) => {
    expect(decide(req(host, port), report)).toMatchObject({
      action: 'deny',
      reason: 'special-address',
    })
    expect(decide(req('other.test', port, { resolved: [host] }), report).reason).toBe(
      'special-address',
    )
  })

  it('protocol checks refuse as they do in allow-all mode', () => {
    expect(
      decide(
        req('other.test', 443, { tls: { kind: 'client-hello', sni: 'x.test', ech: false } }),
        report,
      ).reason,
    ).toBe('sni-mismatch')
    expect(decide(req('other.test', 5432, { payload: 'server-first' }), report).reason).toBe(
      'unreadable-payload',
    )
    expect(decide(req('ssh.test', 22, { payload: 'server-first' }), report).action).toBe('allow')
  })

  it('endpoint refusals are would-deny', () => {
    const d = decide(
      { protocol: 'http', host: 'api.test', port: 80, method: 'POST', path: '/ok/x' },
      report,
    )
    expect(d).toMatchObject({ action: 'allow', wouldDeny: { reason: 'no-endpoint-match' } })
  })

  it('DNS: a name the rules refuse is answered, with a would-deny', () => {
    const d = decide({ protocol: 'dns', host: 'other.test', port: 0, queryType: 'A' }, report)
    expect(d).toMatchObject({
      action: 'allow',
      port: 0,
      wouldDeny: { reason: 'not-in-allow-list' },
    })
    expect(
      decide({ protocol: 'dns', host: 'x.test', port: 0, queryType: 'TXT' }, report).action,
    ).toBe('deny')
  })

  it('an IP target allowed by an IP rule with an SNI the rules refuse: would-deny, not refused', () => {
    const p = policy({ mode: 'report', allow: ['8.8.4.4'] })
    const d = decide(
      req('8.8.4.4', 443, { tls: { kind: 'client-hello', sni: 'other.test', ech: false } }),
      p,
    )
    expect(d).toMatchObject({ action: 'allow', wouldDeny: { reason: 'not-in-allow-list' } })
  })
})

describe('onUnknown: ask', () => {
  const ask = policy({
    onUnknown: 'ask',
    allow: ['allowed.test'],
    deny: ['denied.test'],
  })

  it('marks a request no rule allows: a deny with ask', () => {
    expect(decide(req('unknown.test'), ask)).toMatchObject({
      action: 'deny',
      reason: 'not-in-allow-list',
      ask: true,
    })
    expect(
      decide({ protocol: 'dns', host: 'unknown.test', port: 0, queryType: 'A' }, ask),
    ).toMatchObject({ action: 'deny', ask: true, port: 0 })
  })

  it('never asks about a deny rule, a special address or a protocol refusal', () => {
    for (const d of [
      decide(req('denied.test'), ask),
      decide(req('169.254.169.254', 80), ask),
      decide(req('unknown.test', 443, { resolved: ['10.0.0.1'] }), ask),
      decide(
        req('unknown.test', 443, { tls: { kind: 'client-hello', sni: 'y.test', ech: false } }),
        ask,
      ),
      decide(req('unknown.test', 5432, { payload: 'other' }), ask),
      decide({ protocol: 'dns', host: 'unknown.test', port: 0, queryType: 'TXT' }, ask),
    ]) {
      expect(d.action).toBe('deny')
      expect(d.ask).toBeUndefined()
    }
  })

  it('allowed hosts are allowed as before; without ask nothing is marked', () => {
    expect(decide(req('allowed.test'), ask).action).toBe('allow')
    expect(decide(req('unknown.test'), policy({ allow: ['allowed.test'] })).ask).toBeUndefined()
  })

  it('ask needs allow-list mode and a sane timeout', () => {
    expect(() => policy({ mode: 'allow-all', onUnknown: 'ask' })).toThrow(PolicyError)
    expect(() => policy({ onUnknown: 'ask', approvalTimeoutMs: 0 })).toThrow(/approvalTimeoutMs/)
    expect(policy({ onUnknown: 'ask' }).approvalTimeoutMs).toBe(30_000)
  })
})
