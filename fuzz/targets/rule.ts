// Fuzz target: the rule grammar (src/policy/rule.ts). The input is one rule as
// a profile could write it.
//
// Properties: parseRule returns a rule or throws RuleError, nothing else;
// a rule's canonical text parses back to the same rule (canonicalisation is
// idempotent); surrounding whitespace does not matter; a policy compiled from
// the canonical text decides every probe request exactly as one compiled from
// the text as written.

import {
  compilePolicy,
  decide,
  parseRule,
  RuleError,
  type Policy,
  type Rule,
} from '../../src/policy/index.js'
import { onlyThrows, property, same, wasRefused } from '../lib/property.js'

function parse(text: string): Rule | { refused: Error } {
  return onlyThrows('parseRule', [RuleError], () => parseRule(text))
}

/** What a rule's meaning is made of (not the text it was written as). */
function meaning(rule: Rule): unknown {
  return { canonical: rule.canonical, host: rule.host, ports: rule.ports }
}

function policyOf(rule: string, list: 'allow' | 'deny'): Policy {
  const rules = [{ rule, from: 'fuzz' }]
  return compilePolicy({
    name: 'fuzz',
    mode: list === 'allow' ? 'allow-list' : 'allow-all',
    allow: list === 'allow' ? rules : [],
    deny: list === 'deny' ? rules : [],
  })
}

/** Requests near what a rule names: its host, a subdomain, its parent, its ports and others. */
function probes(rule: Rule): { host: string; port: number }[] {
  const hosts = ['example.com', '10.0.0.1', '2001:db8::1']
  if (rule.host.kind === 'exact') hosts.push(rule.host.name, `a.${rule.host.name}`)
  if (rule.host.kind === 'wildcard')
    hosts.push(rule.host.suffix, `a.${rule.host.suffix}`, `a.b.${rule.host.suffix}`)
  if (rule.host.kind === 'cidr')
    hosts.push(rule.canonical.replace(/^\[|\](:.*)?$|\/.*$|:[0-9*-]+$/g, ''))
  const ports = [80, 443, 22, 8080, 65535]
  if (rule.ports.kind === 'range') ports.push(rule.ports.from, rule.ports.to, rule.ports.to + 1)
  return hosts.flatMap((host) =>
    ports.filter((p) => p >= 1 && p <= 65535).map((port) => ({ host, port })),
  )
}

export function fuzz(data: Buffer): void {
  const text = data.toString('utf8')
  const rule = parse(text)
  same(
    wasRefused(parse(` \t${text}\t `)),
    wasRefused(rule),
    'surrounding whitespace changed whether the rule parses',
  )
  if (wasRefused(rule)) {
    property(rule.refused.message.length > 0, 'a RuleError without a message', text)
    return
  }
  property(rule.text === text.trim(), 'the rule does not keep its text', rule.text)
  const again = parse(rule.canonical)
  property(!wasRefused(again), 'the canonical text of a rule does not parse', rule.canonical, again)
  same(meaning(again), meaning(rule), 'canonicalisation is not idempotent')

  for (const list of ['allow', 'deny'] as const) {
    const written = policyOf(rule.text, list)
    const canonical = policyOf(rule.canonical, list)
    for (const probe of probes(rule)) {
      for (const protocol of ['connect', 'dns'] as const) {
        const request = { protocol, ...probe }
        const a = decide(request, written)
        const b = decide(request, canonical)
        same(a, b, 'the canonical text decides differently')
      }
    }
  }
}
