// Fuzz target: host canonicalisation (src/policy/host.ts and ip.ts), and the
// decide() that every request goes through. The input is one host as a client
// could send it (UTF-8 text).
//
// Properties: parseHost never throws and answers a well-formed host (a
// lowercase LDH name of valid length that does not end in a number, or an
// address in its canonical text, IPv4 inside IPv6 unwrapped) or says why not;
// canonicalisation is idempotent; ASCII case and one trailing dot do not
// matter; where the WHATWG URL parser (what Node clients use) reads a host too,
// both canonicalise to the same host; decide() never throws and decides the
// same for a host and its canonical text.

import { domainToASCII } from 'node:url'
import {
  compilePolicy,
  decide,
  formatIP,
  hostText,
  parseHost,
  unwrapIP,
  type CanonicalHost,
} from '../../src/policy/index.js'
import { property, PropertyViolation, same } from '../lib/property.js'

const POLICY = compilePolicy(
  {
    name: 'fuzz',
    mode: 'allow-list',
    allow: [
      'example.com',
      '*.example.org',
      '10.0.0.0/8:*',
      '2001:db8::/32',
      'xn--bcher-kva.example',
    ].map((rule) => ({ rule, from: 'fuzz' })),
    deny: ['evil.example.org', '10.1.0.0/16'].map((rule) => ({ rule, from: 'fuzz' })),
  },
  { allowSpecial: ['private'] },
)

const LDH_NAME = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/
// The characters a host may have before IDNA mapping (others are refused), so
// that URL delimiters do not make the comparison with the URL parser moot.
const URL_COMPARABLE = /^[A-Za-z0-9._\-\u0080-\ud7ff\ue000-\uffff]+$/

// An ASCII host without a trailing dot, to which one may be added. (IDNA maps
// other characters to "." or to nothing, so for the rest the comparison with the
// URL parser checks trailing dots.)
// eslint-disable-next-line no-control-regex
const ASCII_WITHOUT_TRAILING_DOT = /^[\x00-\x7f]*[\x00-\x2d\x2f-\x7f]$/

function parse(raw: string): ReturnType<typeof parseHost> {
  try {
    return parseHost(raw)
  } catch (err) {
    throw new PropertyViolation(`parseHost threw: ${String(err)}`)
  }
}

function checkWellFormed(raw: string, host: CanonicalHost): void {
  if (host.kind === 'ip') {
    same(host.text, formatIP(host.ip), 'the text of an address is not its canonical form')
    same(unwrapIP(host.ip), host.ip, 'an IPv4 address inside IPv6 was not unwrapped')
    return
  }
  const { name } = host
  property(LDH_NAME.test(name), 'a canonical name with characters outside lowercase LDH', raw, name)
  property(name.length <= 253, 'a canonical name over 253 characters', raw, name.length)
  property(
    name.split('.').every((l) => l.length >= 1 && l.length <= 63),
    'a label of a bad length',
    raw,
    name,
  )
  property(
    !/(^|\.)(\d+|0x[0-9a-f]*)$/.test(name),
    'a name ending in a number is not an address',
    raw,
    name,
  )
}

/** The canonical host, or only that it is invalid (which of its problems is named may differ). */
function outcome(host: ReturnType<typeof parseHost>): unknown {
  return host.kind === 'invalid' ? 'invalid' : host
}

function swapAsciiCase(s: string): string {
  return s.replace(/[A-Za-z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()))
}

/** The host the WHATWG URL parser reads from `http://raw/`, or undefined when it reads none. */
function urlHost(raw: string): string | undefined {
  try {
    return new URL(`http://${raw}/`).hostname
  } catch {
    return undefined
  }
}

export function fuzz(data: Buffer): void {
  const raw = data.toString('utf8')
  const host = parse(raw)
  if (host.kind !== 'invalid') {
    checkWellFormed(raw, host)
    same(parse(hostText(host)), host, 'canonicalisation is not idempotent')
  } else {
    property(typeof host.why === 'string' && host.why.length > 0, 'invalid without a reason', raw)
  }
  same(outcome(parse(swapAsciiCase(raw))), outcome(host), 'ASCII case changed the canonical host')
  if (ASCII_WITHOUT_TRAILING_DOT.test(raw) && !raw.includes(':') && !raw.startsWith('['))
    same(outcome(parse(`${raw}.`)), outcome(host), 'a trailing dot changed the canonical host')

  if (host.kind !== 'invalid' && URL_COMPARABLE.test(raw)) {
    const seen = urlHost(raw)
    if (seen !== undefined) {
      const theirs = parse(seen)
      same(theirs, host, `the URL parser reads "${seen}" (domainToASCII: "${domainToASCII(raw)}")`)
    }
  }

  for (const protocol of ['connect', 'socks', 'http', 'tls', 'dns'] as const) {
    let direct, viaCanonical
    try {
      direct = decide({ protocol, host: raw, port: 443 }, POLICY)
      if (host.kind === 'invalid') continue
      viaCanonical = decide({ protocol, host: hostText(host), port: 443 }, POLICY)
    } catch (err) {
      throw new PropertyViolation(`decide threw: ${String(err)}`)
    }
    same(direct, viaCanonical, 'a host and its canonical text decide differently')
  }
}
