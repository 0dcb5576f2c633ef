// Host canonicalisation: the one place that turns what a client sent (a CONNECT
// authority, a SOCKS address, a Host header, an SNI, a DNS name) or what a
// profile says into the form that rules are matched against. Requests and rule
// patterns go through the same code, so they cannot disagree on spelling.

import { domainToASCII } from 'node:url'
import { endsInNumber, formatIP, parseIPv4, parseIPv6, unwrapIP, type IP } from './ip.js'

export type CanonicalHost =
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'ip'; readonly ip: IP; readonly text: string }

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

function fail(raw: string, why: string): never {
  throw new HostError(`invalid host "${raw}": ${why}`)
}

function ipHost(ip: IP): CanonicalHost {
  const unwrapped = unwrapIP(ip)
  return { kind: 'ip', ip: unwrapped, text: formatIP(unwrapped) }
}

function checkLabels(raw: string, name: string): void {
  if (name.length > MAX_NAME_LENGTH) fail(raw, `longer than ${MAX_NAME_LENGTH} characters`)
  for (const label of name.split('.')) {
    if (label === '') fail(raw, 'empty label')
    if (label.length > MAX_LABEL_LENGTH)
      fail(raw, `label longer than ${MAX_LABEL_LENGTH} characters`)
  }
}

/**
 * Canonicalises a request host or a rule's host part:
 * - IPv6 brackets removed, zone ids refused, embedded IPv4 (mapped, NAT64, 6to4) unwrapped;
 * - IPv4 in any inet_aton spelling to its dotted quad; a name whose last label is
 *   numeric must be such an address;
 * - names lowercased, one trailing dot removed, IDNA (UTS 46) to punycode, empty labels refused.
 * Throws HostError with a message that says what is wrong.
 */
export function canonicalHost(raw: string): CanonicalHost {
  if (raw.length === 0) fail(raw, 'empty')
  if (raw.length > 1024) fail(raw.slice(0, 64) + '…', 'too long')

  if (raw.startsWith('[') || raw.includes(':')) {
    const inner = raw.startsWith('[')
      ? raw.endsWith(']')
        ? raw.slice(1, -1)
        : fail(raw, 'unclosed "["')
      : raw
    if (inner.includes('%')) fail(raw, 'IPv6 zone ids are not accepted')
    const ip = parseIPv6(inner)
    if (!ip) fail(raw, 'not a valid IPv6 address')
    return ipHost(ip)
  }

  let host = raw.endsWith('.') ? raw.slice(0, -1) : raw
  if (host === '') fail(raw, 'empty')

  // Fast path: most hosts are plain ASCII letters, digits and hyphens, checked in one pass.
  const scan = scanAsciiName(host)
  if (scan === SCAN_NOT_PLAIN) host = idnaToAscii(raw, host)
  else if (scan === SCAN_UPPERCASE) host = host.toLowerCase()
  if (endsInNumber(host)) {
    const ip = parseIPv4(host)
    if (!ip) fail(raw, 'looks like an IPv4 address but is not a valid one')
    return ipHost(ip)
  }
  // The scan already checked label and name lengths of plain names.
  if (scan === SCAN_NOT_PLAIN) checkLabels(raw, host)
  return { kind: 'name', name: host }
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

function idnaToAscii(raw: string, host: string): string {
  if (!RAW_HOST.test(host)) fail(raw, 'contains characters that cannot appear in a host name')
  if (host.split('.').includes('')) fail(raw, 'empty label')
  const ascii = domainToASCII(host.toLowerCase())
  if (ascii === '') fail(raw, 'not a valid internationalised domain name')
  const name = ascii.endsWith('.') ? ascii.slice(0, -1) : ascii
  if (!LDH_NAME.test(name)) {
    if (name.split('.').includes('')) fail(raw, 'empty label')
    fail(raw, 'contains characters that cannot appear in a host name')
  }
  return name
}

/** The canonical text of a host: the name, or the IP address in canonical form. */
export function hostText(host: CanonicalHost): string {
  return host.kind === 'name' ? host.name : host.text
}

/** Canonical host text, or undefined when the input is not a valid host. */
export function tryCanonicalHost(raw: string): CanonicalHost | undefined {
  try {
    return canonicalHost(raw)
  } catch (err) {
    if (err instanceof HostError) return undefined
    throw err
  }
}
