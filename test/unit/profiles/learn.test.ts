// Learning a profile from the destinations a run used: minimal rules, ports
// only off 80/443, tcp: for raw TCP, wildcards at >= 3 subdomains (never over a
// public suffix), built-in building blocks included when their main host (or
// two hosts) was used, a diff against a base; and, as a property over random
// runs, the result allows every used destination and nothing else outside the
// base, its includes and its wildcards.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { compilePolicy, decide, parseHost } from '../../../src/policy/index.js'
import { learnProfile, LearnError, type Observation } from '../../../src/profiles/learn.js'
import {
  parseProfile,
  policySpecOf,
  ProfileCatalogue,
  resolveProfile,
} from '../../../src/profiles/index.js'

const catalogue = new ProfileCatalogue()
const T0 = Date.parse('2026-01-01T00:00:00Z')

function obs(host: string, port = 443, extra: Partial<Observation> = {}, i = 0): Observation {
  return {
    host,
    port,
    raw: false,
    count: 1,
    firstSeen: new Date(T0 + i * 1000).toISOString(),
    ...extra,
  }
}

/** The learned profile compiled as the proxy would run it (its includes resolved from the catalogue). */
function policyOf(yaml: string, name: string) {
  const def = parseProfile(yaml, `${name}.yaml`)
  const lookup = (n: string) => {
    if (n === name) return def
    const p = catalogue.get(n)
    return p ? parseProfile(readFileSync(p.file, 'utf8'), p.file) : undefined
  }
  return compilePolicy(policySpecOf(resolveProfile(name, lookup)))
}

const allows = (policy: ReturnType<typeof policyOf>, host: string, port = 443, raw = false) =>
  decide(
    { protocol: 'connect', host, port, ...(raw ? { payload: 'server-first' as const } : {}) },
    policy,
  ).action === 'allow'

describe('learnProfile', () => {
  it('the example run: pip, npm and git plus two API hosts', () => {
    const used = [
      obs('pypi.org', 443, { count: 4 }, 0),
      obs('files.pythonhosted.org', 443, { count: 9 }, 1),
      obs('registry.npmjs.org', 443, { count: 12 }, 2),
      obs('github.com', 443, { count: 3 }, 3),
      obs('api.weather.example', 443, { count: 2 }, 4),
      obs('api.billing.example', 8443, { count: 1 }, 5),
      obs('api.weather.example', 0, { count: 1 }, 6), // its DNS question
      obs('db.internal.example', 5432, { raw: true }, 7),
    ]
    const learned = learnProfile(used, {
      name: 'agent',
      catalogue,
      sandbox: 'sbx1',
      now: new Date(T0),
    })
    expect(new Set(learned.include)).toEqual(new Set(['pypi', 'npm', 'github']))
    expect(learned.allow.map((r) => r.rule)).toEqual([
      'api.weather.example',
      'api.billing.example:8443',
      'tcp:db.internal.example:5432',
    ])
    expect(learned.allow[0]).toMatchObject({
      count: 3,
      firstSeen: new Date(T0 + 4000).toISOString(),
    })
    expect(learned.yaml).toContain('# Learned by isorun from sandbox sbx1')
    expect(learned.yaml).toMatch(
      /- api\.weather\.example # used 3 times, first 2026-01-01T00:00:04/,
    )
    expect(learned.yaml).toMatch(/- pypi # covers pypi\.org, files\.pythonhosted\.org/)

    const policy = policyOf(learned.yaml, 'agent')
    for (const o of used) expect(allows(policy, o.host, o.port || 443, o.raw), o.host).toBe(true)
    expect(allows(policy, 'api.other.example')).toBe(false)
    expect(allows(policy, 'api.billing.example', 443)).toBe(false)
    expect(allows(policy, 'db.internal.example', 5432, false)).toBe(true)
    expect(allows(policy, 'db.internal.example', 5433, true)).toBe(false)
  })

  it('one non-main host of a large profile is named, not included', () => {
    const learned = learnProfile([obs('api.github.com')], { name: 'x', catalogue })
    expect(learned.include).toEqual([])
    expect(learned.allow.map((r) => r.rule)).toEqual(['api.github.com'])
  })

  it('a wildcard only from 3 distinct subdomains of one registrable domain', () => {
    const two = learnProfile([obs('a.cdn.example'), obs('b.cdn.example')], { name: 'x', catalogue })
    expect(two.allow.map((r) => r.rule)).toEqual(['a.cdn.example', 'b.cdn.example'])
    const three = learnProfile(
      [
        obs('a.cdn.example'),
        obs('b.x.cdn.example', 443, {}, 1),
        obs('c.cdn.example', 80, {}, 2),
        obs('cdn.example', 443, {}, 3),
      ],
      { name: 'x', catalogue },
    )
    expect(three.allow.map((r) => r.rule)).toEqual(['*.cdn.example', 'cdn.example'])
    expect(three.allow[0]?.hosts).toEqual(['a.cdn.example', 'b.x.cdn.example', 'c.cdn.example'])
    // Ports off 80/443 stay exact.
    const ports = learnProfile(
      ['a', 'b', 'c'].map((s, i) => obs(`${s}.svc.example`, 9000, {}, i)),
      { name: 'x', catalogue },
    )
    expect(ports.allow.map((r) => r.rule)).toEqual([
      'a.svc.example:9000',
      'b.svc.example:9000',
      'c.svc.example:9000',
    ])
  })

  it('never a wildcard over a public suffix, private section included', () => {
    const learned = learnProfile(
      ['alice', 'bob', 'carol'].map((u, i) => obs(`${u}.github.io`, 443, {}, i)),
      { name: 'x', catalogue },
    )
    expect(learned.allow.map((r) => r.rule)).toEqual([
      'alice.github.io',
      'bob.github.io',
      'carol.github.io',
    ])
  })

  it('IP targets, IPv6 with a port', () => {
    const learned = learnProfile([obs('203.0.113.5', 443), obs('2001:db8::1', 8080, {}, 1)], {
      name: 'x',
      catalogue,
    })
    expect(learned.allow.map((r) => r.rule)).toEqual(['203.0.113.5', '[2001:db8::1]:8080'])
    expect(parseProfile(learned.yaml, 'x.yaml').allow).toEqual([
      '203.0.113.5',
      '[2001:db8::1]:8080',
    ])
  })

  it('with a base: includes it, adds only what it lacks, lists what it did not need', () => {
    const learned = learnProfile([obs('pypi.org'), obs('api.weather.example', 443, {}, 1)], {
      name: 'mine',
      catalogue,
      base: 'pypi',
    })
    expect(learned.include).toEqual(['pypi'])
    expect(learned.allow.map((r) => r.rule)).toEqual(['api.weather.example'])
    expect(learned.diff).toEqual({
      base: 'pypi',
      added: ['api.weather.example'],
      unused: ['files.pythonhosted.org'],
    })
    expect(learned.yaml).toContain('#   files.pythonhosted.org')
  })

  it('an empty run gives a valid profile that allows nothing', () => {
    const learned = learnProfile([], { name: 'empty', catalogue })
    expect(allows(policyOf(learned.yaml, 'empty'), 'pypi.org')).toBe(false)
  })

  it('bad names and unknown bases are errors', () => {
    expect(() => learnProfile([], { name: 'Bad Name', catalogue })).toThrow(LearnError)
    expect(() => learnProfile([], { name: 'x', catalogue, base: 'nope' })).toThrow(/unknown base/)
  })
})

describe('learnProfile, property over random runs', () => {
  // A small deterministic PRNG: the same runs every time, many shapes.
  function prng(seed: number): () => number {
    let s = seed >>> 0
    return () => {
      s = (s * 1664525 + 1013904223) >>> 0
      return s / 2 ** 32
    }
  }
  const DOMAINS = ['alpha.example', 'beta.example', 'gamma.co.uk', 'pages.github.io', 'npmjs.org']
  const LABELS = ['api', 'www', 'cdn', 'a.b', 'static', 'registry', 'files']
  const PORTS = [443, 443, 80, 0, 8443, 22]

  it.each(Array.from({ length: 40 }, (_, i) => i + 1))('run %d', (seed) => {
    const rand = prng(seed)
    const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T
    const host = (): string => (rand() < 0.2 ? pick(DOMAINS) : `${pick(LABELS)}.${pick(DOMAINS)}`)
    const used: Observation[] = Array.from({ length: 1 + Math.floor(rand() * 12) }, (_, i) => {
      const port = pick(PORTS)
      return obs(host(), port, { raw: port === 22, count: 1 + Math.floor(rand() * 5) }, i)
    })
    const base = rand() < 0.3 ? 'npm' : undefined
    const learned = learnProfile(used, { name: 'prop', catalogue, ...(base ? { base } : {}) })
    const policy = policyOf(learned.yaml, 'prop')
    for (const o of used)
      expect(allows(policy, o.host, o.port || 443, o.raw), `${o.host}:${o.port}`).toBe(true)

    // Whatever else it allows is in the base, an include, or under a learned wildcard.
    const included = compilePolicy({
      name: 'inc',
      mode: 'allow-list',
      allow: learned.include.flatMap((n) => catalogue.get(n)?.allow ?? []),
      deny: [],
    })
    const wildcards = learned.allow
      .filter((r) => r.rule.startsWith('*.'))
      .map((r) => r.rule.slice(2))
    const usedKeys = new Set(
      used.map(
        (o) =>
          `${parseHost(o.host).kind === 'name' ? o.host : o.host}|${o.port === 0 || o.port === 80 ? 443 : o.port}|${o.raw}`,
      ),
    )
    for (let i = 0; i < 60; i++) {
      const probe = host()
      const port = pick([443, 8443, 22])
      const raw = port === 22
      if (!allows(policy, probe, port, raw)) continue
      const explained =
        usedKeys.has(`${probe}|${port}|${raw}`) ||
        allows(included, probe, port, raw) ||
        (!raw && port === 443 && wildcards.some((w) => probe.endsWith(`.${w}`)))
      expect(explained, `${probe}:${port}${raw ? ' (raw)' : ''} allowed without reason`).toBe(true)
    }
  })
})
