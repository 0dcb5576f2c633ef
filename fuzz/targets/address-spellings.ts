// Fuzz target: every spelling of an address decides the same way. The input
// picks an IPv4 or IPv6 address, a policy (mode, allow and deny rules around
// that address, operator ranges) and a request (protocol, port); the address
// is then written every way the canonicaliser accepts (fuzz/lib/spellings.ts).
//
// Properties: every spelling canonicalises to one text; decide() gives one
// decision (action, reason, rule, detail) for all of them, as the target host
// and, by action, reason and rule, as the address a name resolved to; and a
// rule or CIDR written in any of those spellings canonicalises to one rule.

import { FuzzedDataProvider } from '@jazzer.js/core/dist/FuzzedDataProvider.js'
import {
  compilePolicy,
  decide,
  formatIP,
  ipv6,
  parseHost,
  parseRule,
  PolicyError,
  RuleError,
  SPECIAL_GROUPS,
  type Decision,
  type Mode,
  type Policy,
  type Protocol,
} from '../../src/policy/index.js'
import { property, same } from '../lib/property.js'
import {
  allSpellingsOfIPv4,
  embeddings,
  ipv4Spellings,
  ipv6Spellings,
  withDecorations,
} from '../lib/spellings.js'

const MODES: Mode[] = ['allow-list', 'allow-all', 'deny-all']
const PROTOCOLS: Protocol[] = ['connect', 'socks', 'http', 'tls']

interface Address {
  readonly version: 4 | 6
  readonly value: bigint
}

function dottedQuad(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')
}

function text(address: Address): string {
  return address.version === 4 ? dottedQuad(Number(address.value)) : formatIP(ipv6(address.value))
}

/** The network of `address` under a prefix, as an address. */
function network(address: Address, prefix: number): Address {
  const bits = address.version === 4 ? 32 : 128
  const hostBits = BigInt(bits - prefix)
  return { version: address.version, value: (address.value >> hostBits) << hostBits }
}

/** A CIDR around the address in each spelling rules accept: plain, and IPv4 inside IPv6. */
function cidrSpellings(address: Address, prefix: number): string[] {
  const net = network(address, prefix)
  if (address.version === 6) return [`${text(net)}/${prefix}`]
  const v4 = Number(net.value)
  const out = [`${dottedQuad(v4)}/${prefix}`]
  out.push(`::ffff:${dottedQuad(v4)}/${96 + prefix}`, `64:ff9b::${dottedQuad(v4)}/${96 + prefix}`)
  out.push(`${formatIP(ipv6((0x2002n << 112n) | (BigInt(v4) << 80n)))}/${16 + prefix}`)
  if (v4 > 1) out.push(`::${dottedQuad(v4)}/${96 + prefix}`)
  return out
}

function portPart(fdp: FuzzedDataProvider, port: number): string {
  switch (fdp.consumeIntegralInRange(0, 4)) {
    case 0:
      return ''
    case 1:
      return `:${port}`
    case 2:
      return ':*'
    case 3:
      return `:${Math.max(1, port - 5)}-${Math.min(65535, port + 5)}`
    default:
      return `:${fdp.consumeIntegralInRange(1, 65535)}`
  }
}

function withPort(host: string, port: string): string {
  return port !== '' && host.includes(':') ? `[${host}]${port}` : host + port
}

/** One rule near the address: the address or a CIDR around it in some spelling, or something else. */
function ruleText(
  fdp: FuzzedDataProvider,
  address: Address,
  spellings: readonly string[],
  port: number,
): string {
  const bits = address.version === 4 ? 32 : 128
  switch (fdp.consumeIntegralInRange(0, 4)) {
    case 0:
      return withPort(
        fdp.pickValue([...spellings]).replace(/^\[|\]$|\.$/g, ''),
        portPart(fdp, port),
      )
    case 1:
      return withPort(
        fdp.pickValue(cidrSpellings(address, fdp.consumeIntegralInRange(0, bits))),
        portPart(fdp, port),
      )
    case 2:
      return '*' + portPart(fdp, port)
    case 3:
      return fdp.pickValue(['example.com', '*.example.com', 'allowed.test']) + portPart(fdp, port)
    default: {
      const other: Address =
        address.version === 4
          ? { version: 4, value: BigInt(fdp.consumeIntegral(4)) }
          : { version: 6, value: fdp.consumeBigIntegral(16) }
      return withPort(text(other), portPart(fdp, port))
    }
  }
}

function validRules(texts: readonly string[]): string[] {
  return texts.filter((t) => {
    try {
      parseRule(t)
      return true
    } catch (err) {
      if (err instanceof RuleError) return false
      throw err
    }
  })
}

function buildPolicy(
  fdp: FuzzedDataProvider,
  address: Address,
  spellings: readonly string[],
  port: number,
): Policy {
  const mode = fdp.pickValue(MODES)
  const rules = (n: number): string[] =>
    validRules(Array.from({ length: n }, () => ruleText(fdp, address, spellings, port)))
  const allow = mode === 'deny-all' ? [] : rules(fdp.consumeIntegralInRange(0, 3))
  const deny = rules(fdp.consumeIntegralInRange(0, 3))
  const bits = address.version === 4 ? 32 : 128
  const allowSpecial = [
    ...SPECIAL_GROUPS.filter(() => fdp.consumeIntegralInRange(0, 7) === 0),
    ...(fdp.consumeBoolean()
      ? [fdp.pickValue(cidrSpellings(address, fdp.consumeIntegralInRange(0, bits)))]
      : []),
  ]
  const blockAlways = fdp.consumeBoolean()
    ? [fdp.pickValue(cidrSpellings(address, fdp.consumeIntegralInRange(0, bits)))]
    : []
  const spec = {
    name: 'fuzz',
    mode,
    allow: allow.map((rule) => ({ rule, from: 'fuzz' })),
    deny: deny.map((rule) => ({ rule, from: 'fuzz' })),
  }
  try {
    return compilePolicy(spec, { allowSpecial, blockAlways })
  } catch (err) {
    // An operator range in a spelling operators may not use: decide without it.
    if (err instanceof PolicyError) return compilePolicy(spec, {})
    throw err
  }
}

function checkRuleSpellings(
  address: Address,
  spellings: readonly string[],
  fdp: FuzzedDataProvider,
): void {
  const port = fdp.pickValue(['', ':443', ':*', ':22-80'])
  const single = spellings.filter((s) => !s.startsWith('[') && !s.endsWith('.'))
  const bits = address.version === 4 ? 32 : 128
  const cidrs = cidrSpellings(address, fdp.consumeIntegralInRange(0, bits))
  for (const group of [single, cidrs]) {
    const canonical = new Map<string, string>()
    for (const s of validRules(group.map((h) => withPort(h, port))))
      canonical.set(s, parseRule(s).canonical)
    property(
      new Set(canonical.values()).size <= 1,
      'spellings of one address or CIDR give different rules',
      canonical,
    )
  }
}

function essentials(d: Decision): Pick<Decision, 'action' | 'reason' | 'rule'> {
  return { action: d.action, reason: d.reason, rule: d.rule }
}

export function fuzz(data: Buffer): void {
  const fdp = new FuzzedDataProvider(data)
  const isV4 = fdp.consumeBoolean()
  const address: Address = isV4
    ? { version: 4, value: BigInt(fdp.consumeIntegral(4)) }
    : { version: 6, value: fdp.consumeBigIntegral(16) }
  const plain = isV4
    ? [
        ...ipv4Spellings(Number(address.value), fdp),
        ...embeddings(Number(address.value), fdp).flatMap((v) => ipv6Spellings(v, fdp)),
      ]
    : ipv6Spellings(address.value, fdp)
  const spellings = isV4 ? allSpellingsOfIPv4(Number(address.value), fdp) : withDecorations(plain)

  const canonical = parseHost(spellings[0]!)
  property(canonical.kind === 'ip', 'a spelling is not read as an address', spellings[0], canonical)
  for (const s of spellings)
    same(parseHost(s), canonical, `"${s}" canonicalises differently from "${spellings[0]}"`)

  const port = fdp.pickValue([80, 443, 22, fdp.consumeIntegralInRange(1, 65535)])
  const protocol = fdp.pickValue(PROTOCOLS)
  const policy = buildPolicy(fdp, address, spellings, port)
  const first = decide({ protocol, host: spellings[0]!, port }, policy)
  for (const s of spellings)
    same(
      decide({ protocol, host: s, port }, policy),
      first,
      `"${s}" decides differently from "${spellings[0]}"`,
    )

  const resolved = essentials(
    decide({ protocol, host: 'allowed.test', port, resolved: [plain[0]!] }, policy),
  )
  for (const s of plain)
    same(
      essentials(decide({ protocol, host: 'allowed.test', port, resolved: [s] }, policy)),
      resolved,
      `resolving to "${s}" decides differently from "${plain[0]}"`,
    )

  checkRuleSpellings(address, plain, fdp)
}
