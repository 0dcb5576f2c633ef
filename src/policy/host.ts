// Host canonicalisation: the one place that turns what a client sent (a CONNECT
// authority, a SOCKS address, a Host header, an SNI, a DNS name) or what a
// profile says into the form that rules are matched against. Requests and rule
// patterns go through the same code, so they cannot disagree on spelling.

import { domainToASCII } from 'node:url'
import { endsInNumber, formatIP, parseIPv4, parseIPv6, unwrapIP, type IP } from './ip.js'

export type CanonicalHost =
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'ip'; readonly ip: IP; readonly text: string }

/** Why a host is not valid; parseHost returns it instead of throwing (decide() stays cheap). */
export interface InvalidHost {
  readonly kind: 'invalid'
  readonly why: string
}

export class HostError extends Error {}

const MAX_NAME_LENGTH = 253
const MAX_LABEL_LENGTH = 63
// Letters, digits, hyphen and underscore (seen in real service names such as
// _dmarc or SRV-style hosts); anything else is not a host name we will match.
const LDH_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/
// Characters that may appear in a raw host before IDNA mapping. URL delimiters,
// percent signs, whitespace and controls are refused outright: an IDNA library
// would cut the name at some of them ("a/b" becomes "a") instead of failing.
const RAW_HOST = /^[A-Za-z0-9._\-\u0080-\uffff]+$/

function invalid(why: string): InvalidHost {
  return { kind: 'invalid', why }
}

function ipHost(ip: IP): CanonicalHost {
  const unwrapped = unwrapIP(ip)
  return { kind: 'ip', ip: unwrapped, text: formatIP(unwrapped) }
}

/** Why a name's labels or length are not valid, or undefined when they are. */
function labelProblem(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH) return `longer than ${MAX_NAME_LENGTH} characters`
  for (const label of name.split('.')) {
    if (label === '') return 'empty label'
    if (label.length > MAX_LABEL_LENGTH) return `label longer than ${MAX_LABEL_LENGTH} characters`
  }
  return undefined
}

/**
 * Canonicalises a request host or a rule's host part:
 * - IPv6 brackets removed, zone ids refused, embedded IPv4 (mapped, NAT64, 6to4) unwrapped;
 * - IPv4 in any inet_aton spelling to its dotted quad; a name whose last label is
 *   numeric must be such an address;
 * - names lowercased, one trailing dot removed, IDNA (UTS 46) to punycode, empty labels refused.
 * Returns why the host is invalid instead of throwing.
 */
export function parseHost(raw: string): CanonicalHost | InvalidHost {
  if (raw.length === 0) return invalid('empty')
  if (raw.length > 1024) return invalid('too long')

  if (raw.startsWith('[') || raw.includes(':')) {
    if (raw.startsWith('[') && !raw.endsWith(']')) return invalid('unclosed "["')
    const inner = raw.startsWith('[') ? raw.slice(1, -1) : raw
    if (inner.includes('%')) return invalid('IPv6 zone ids are not accepted')
    const ip = parseIPv6(inner)
    return ip ? ipHost(ip) : invalid('not a valid IPv6 address')
  }

  let host = raw.endsWith('.') ? raw.slice(0, -1) : raw
  if (host === '') return invalid('empty')

  // Fast path: most hosts are plain ASCII letters, digits and hyphens, checked in one pass.
  const scan = scanAsciiName(host)
  if (scan === SCAN_NOT_PLAIN) {
    const ascii = idnaToAscii(raw)
    if (typeof ascii !== 'string') return ascii
    host = ascii
  } else if (scan === SCAN_UPPERCASE) {
    host = host.toLowerCase()
  }
  if (endsInNumber(host)) {
    const ip = parseIPv4(host)
    return ip ? ipHost(ip) : invalid('looks like an IPv4 address but is not a valid one')
  }
  // The scan already checked label and name lengths of plain names.
  const problem = scan === SCAN_NOT_PLAIN ? labelProblem(host) : undefined
  return problem ? invalid(problem) : { kind: 'name', name: host }
}

/** parseHost, throwing HostError (with the host and why) for an invalid one. */
export function canonicalHost(raw: string): CanonicalHost {
  const host = parseHost(raw)
  if (host.kind === 'invalid') {
    const shown = raw.length > 64 ? `${raw.slice(0, 64)}…` : raw
    throw new HostError(`invalid host "${shown}": ${host.why}`)
  }
  return host
}

const SCAN_PLAIN = 0
const SCAN_UPPERCASE = 1
const SCAN_NOT_PLAIN = 2

/**
 * One pass over an ASCII name: PLAIN when it is already lowercase
 * letters/digits/hyphen/underscore with labels of 1 to 63 characters, at most
 * 253 in all, and no punycode; UPPERCASE when lowercasing makes it so;
 * NOT_PLAIN when it needs IDNA or is invalid (the slow path reports why).
 */
function scanAsciiName(host: string): number {
  if (host.length > MAX_NAME_LENGTH) return SCAN_NOT_PLAIN
  let result = SCAN_PLAIN
  let labelStart = 0
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i)
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 95) continue // a-z 0-9 _
    if (c === 45) {
      // A punycode label (xn--) must be validated by IDNA.
      if (
        i === labelStart + 2 &&
        host.charCodeAt(i + 1) === 45 &&
        (host.charCodeAt(labelStart) | 32) === 120 &&
        (host.charCodeAt(labelStart + 1) | 32) === 110
      ) {
        return SCAN_NOT_PLAIN
      }
      continue
    }
    if (c === 46) {
      if (i === labelStart || i - labelStart > MAX_LABEL_LENGTH) return SCAN_NOT_PLAIN
      labelStart = i + 1
      continue
    }
    if (c >= 65 && c <= 90) {
      result = SCAN_UPPERCASE
      continue
    }
    return SCAN_NOT_PLAIN
  }
  const lastLabel = host.length - labelStart
  return lastLabel === 0 || lastLabel > MAX_LABEL_LENGTH ? SCAN_NOT_PLAIN : result
}

/**
 * IDNA (UTS 46) to an A-label name, one trailing dot removed. The raw host is
 * mapped with its trailing dot: mapping turns "。" and "．" into ".", so
 * "a.b。" ends in one dot (it is a.b) and "a.b。." in two (an empty label),
 * as the URL parser reads them.
 */
function idnaToAscii(raw: string): string | InvalidHost {
  if (!RAW_HOST.test(raw)) return invalid('contains characters that cannot appear in a host name')
  if ((raw.endsWith('.') ? raw.slice(0, -1) : raw).split('.').includes(''))
    return invalid('empty label')
  const ascii = domainToASCII(raw.toLowerCase())
  if (ascii === '') return invalid('not a valid internationalised domain name')
  const name = ascii.endsWith('.') ? ascii.slice(0, -1) : ascii
  if (!LDH_NAME.test(name)) {
    if (name.split('.').includes('')) return invalid('empty label')
    return invalid('contains characters that cannot appear in a host name')
  }
  return name
}

/** The canonical text of a host: the name, or the IP address in canonical form. */
export function hostText(host: CanonicalHost): string {
  return host.kind === 'name' ? host.name : host.text
}

/** Canonical host, or undefined when the input is not a valid host. */
export function tryCanonicalHost(raw: string): CanonicalHost | undefined {
  const host = parseHost(raw)
  return host.kind === 'invalid' ? undefined : host
}
