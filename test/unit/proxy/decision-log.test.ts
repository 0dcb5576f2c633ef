// The decision log's lines: one JSON object per line with the same fields, in
// the same order, as the pino lines they replaced; optional fields only when
// set; strings escaped; a long path cut. And the ring, the metrics and the
// subscribers.

import { describe, expect, it } from 'vitest'
import type { Decision } from '../../../src/policy/index.js'
import { DecisionLog, type DecisionEvent } from '../../../src/proxy/decision-log.js'

function logWith(logAllowed = true): { log: DecisionLog; lines: string[] } {
  const lines: string[] = []
  const log = new DecisionLog({
    sandbox: 'sbx-1',
    logAllowed,
    ringSize: 3,
    destination: { write: (line: string) => void lines.push(line) },
  })
  return { log, lines }
}

const allow: Decision = {
  action: 'allow',
  reason: 'allowed-by-rule',
  rule: 'example.com',
  from: 'p',
  host: 'example.com',
  port: 443,
}
const deny: Decision = {
  action: 'deny',
  reason: 'special-address',
  rule: null,
  from: null,
  host: '10.0.0.1',
  port: 80,
  detail: '10.0.0.1 is in 10.0.0.0/8, private-use',
}

describe('decision lines', () => {
  it('a full line: every field, in the order pino wrote them', () => {
    const { log, lines } = logWith()
    const startedAt = performance.now() - 12.34
    log.record(
      {
        protocol: 'http',
        decision: allow,
        sni: 'example.com',
        method: 'GET',
        path: '/a',
        status: 201,
        qtype: 'A',
        client: '127.0.0.1:5000',
        address: '93.184.215.14',
        error: 'upstream: ECONNRESET',
        bytesUp: 10,
        bytesDown: 20,
        startedAt,
      },
      'profile-x',
    )
    expect(lines).toHaveLength(1)
    const line = lines[0] as string
    expect(line.endsWith('}\n')).toBe(true)
    expect(line.indexOf('\n')).toBe(line.length - 1)
    const parsed = JSON.parse(line) as Record<string, unknown>
    expect(Object.keys(parsed)).toEqual([
      'level',
      'time',
      'sandbox',
      'profile',
      'protocol',
      'host',
      'port',
      'sni',
      'method',
      'path',
      'status',
      'qtype',
      'action',
      'rule',
      'reason',
      'client',
      'address',
      'error',
      'bytesUp',
      'bytesDown',
      'durationMs',
      'msg',
    ])
    expect(parsed).toMatchObject({
      status: 201,
      level: 'info',
      sandbox: 'sbx-1',
      profile: 'profile-x',
      protocol: 'http',
      host: 'example.com',
      port: 443,
      action: 'allow',
      rule: 'example.com',
      reason: 'allowed-by-rule',
      bytesUp: 10,
      bytesDown: 20,
      msg: 'allowed',
    })
    expect(parsed.durationMs).toBeGreaterThanOrEqual(12.3)
    expect(parsed.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(Math.abs(Date.parse(parsed.time as string) - Date.now())).toBeLessThan(1000)
  })

  it('a refusal: level warn, msg blocked, null rule, detail; unset fields absent', () => {
    const { log, lines } = logWith(false)
    log.record({ protocol: 'connect', decision: deny, startedAt: performance.now() }, 'p')
    const parsed = JSON.parse(lines[0] as string) as Record<string, unknown>
    expect(Object.keys(parsed)).toEqual([
      'level',
      'time',
      'sandbox',
      'profile',
      'protocol',
      'host',
      'port',
      'action',
      'rule',
      'reason',
      'detail',
      'bytesUp',
      'bytesDown',
      'durationMs',
      'msg',
    ])
    expect(parsed).toMatchObject({ level: 'warn', msg: 'blocked', rule: null, bytesUp: 0 })
    expect(parsed.detail).toBe(deny.detail)
  })

  it('allowed decisions are not written with logAllowed off, but are kept and counted', () => {
    const { log, lines } = logWith(false)
    log.record({ protocol: 'http', decision: allow, startedAt: performance.now() }, 'p')
    expect(lines).toEqual([])
    expect(log.events()).toHaveLength(1)
    expect(log.metrics.render({ policy: 'p', ringSize: 1 })).toContain(
      'isorun_decisions_total{action="allow",reason="allowed-by-rule",protocol="http"} 1',
    )
  })

  it('escapes what a client sent: quotes, backslashes, controls, non-ASCII', () => {
    const { log, lines } = logWith()
    const path = '/a"b\\c\n\u0000\u2028é😀'
    log.record(
      {
        protocol: 'http',
        decision: { ...allow, host: 'xn--bcher-kva.example' },
        method: 'G"T',
        path,
        error: 'x\ty',
        startedAt: performance.now(),
      },
      'p"q',
    )
    const line = lines[0] as string
    expect(line.split('\n')).toHaveLength(2)
    const parsed = JSON.parse(line) as Record<string, unknown>
    expect(parsed).toMatchObject({ path, method: 'G"T', error: 'x\ty', profile: 'p"q' })
  })

  it('a long path is cut at 512 characters', () => {
    const { log, lines } = logWith()
    const event = log.record(
      { protocol: 'http', decision: allow, path: `/${'a'.repeat(600)}`, startedAt: 0 },
      'p',
    )
    expect(event.path).toBe(`/${'a'.repeat(511)}…`)
    expect((JSON.parse(lines[0] as string) as { path: string }).path).toBe(event.path)
  })

  it('an empty path is kept, an empty SNI or method is not', () => {
    const { log, lines } = logWith()
    log.record(
      { protocol: 'http', decision: allow, path: '', sni: '', method: '', startedAt: 0 },
      'p',
    )
    const parsed = JSON.parse(lines[0] as string) as Record<string, unknown>
    expect(parsed.path).toBe('')
    expect('sni' in parsed).toBe(false)
    expect('method' in parsed).toBe(false)
  })
})

describe('the ring and subscribers', () => {
  it('keeps the newest ringSize events of each action, oldest first; filters by action and time', () => {
    const { log } = logWith()
    for (let i = 0; i < 8; i++)
      log.record(
        { protocol: 'http', decision: i % 4 === 1 ? deny : allow, path: `/${i}`, startedAt: 0 },
        'p',
      )
    // Allowed: /0 /2 /3 /4 /6 /7 (the newest 3 kept); refused: /1 /5 (both kept).
    expect(log.size).toBe(5)
    expect(log.events().map((e) => e.path)).toEqual(['/1', '/4', '/5', '/6', '/7'])
    expect(log.events({ action: 'deny' }).map((e) => e.path)).toEqual(['/1', '/5'])
    expect(log.events({ limit: 2 }).map((e) => e.path)).toEqual(['/6', '/7'])
    expect(log.events({ since: '9999' })).toEqual([])
  })

  it('a flood of allowed decisions cannot push a refusal out of the ring', () => {
    const { log } = logWith()
    log.record({ protocol: 'http', decision: deny, path: '/refused', startedAt: 0 }, 'p')
    for (let i = 0; i < 1000; i++)
      log.record({ protocol: 'dns', decision: allow, startedAt: 0 }, 'p')
    expect(log.events({ action: 'deny' }).map((e) => e.path)).toEqual(['/refused'])
  })

  it('subscribers get every event until they unsubscribe', () => {
    const { log } = logWith()
    const seen: DecisionEvent[] = []
    const stop = log.subscribe((e) => seen.push(e))
    log.record({ protocol: 'http', decision: allow, startedAt: 0 }, 'p')
    stop()
    log.record({ protocol: 'http', decision: allow, startedAt: 0 }, 'p')
    expect(seen).toHaveLength(1)
  })

  it('operational messages: level, fields, msg', () => {
    const { log, lines } = logWith()
    log.operational.info({ policy: 'x', n: 1 }, 'proxy started')
    log.operational.warn({ policy: 'x' }, 'refused')
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      { level: 'info', policy: 'x', n: 1, msg: 'proxy started' },
      { level: 'warn', policy: 'x', msg: 'refused' },
    ])
  })
})
