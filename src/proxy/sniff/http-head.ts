// Incremental parser for the head of the first plain HTTP/1.x request on a
// tunnel (RFC 9112 §2–§5), and the first-bytes classifier that picks between
// the TLS and HTTP sniffers.
//
// The peer is hostile and the decision is made on the Host it names, so the
// grammar is the strict one: anything that two HTTP implementations could read
// differently (bare LF, obs-fold, several Host headers, a target naming another
// authority) is `invalid`, not repaired. Pure and stateless: the caller passes
// everything received so far on each call.

import { looksLikeTls } from './client-hello.js'

/** Upper bound on the request line plus headers, final CRLF included. */
export const MAX_HTTP_HEAD_BYTES = 32 * 1024

/**
 * Upper bound on header fields in the head (Apache's LimitRequestFields
 * default). Real requests carry 5–40; the bound also keeps each call cheap.
 */
export const MAX_HTTP_HEADER_FIELDS = 100

export type HttpVersion = 'HTTP/1.0' | 'HTTP/1.1'

export type HttpHeadResult =
  | { readonly status: 'incomplete' }
  | {
      readonly status: 'ok'
      readonly method: string
      readonly target: string
      readonly version: HttpVersion
      /** The Host value as sent (OWS trimmed, port included, not canonicalised); null if empty. */
      readonly host: string | null
      /** Bytes of the request line and headers, up to and including the empty line. */
      readonly headerBytes: number
    }
  | { readonly status: 'invalid'; readonly error: string }

export type FirstBytesClass = 'tls' | 'http' | 'other' | 'incomplete'

// Methods of RFC 9110 plus PATCH (RFC 5789) and the WebDAV methods of RFC 4918
// and REPORT (RFC 3253, used by CalDAV/CardDAV and Subversion). "PRI" is left
// out on purpose: it only opens the HTTP/2 preface, which is not HTTP/1.x.
export const HTTP_METHODS: readonly string[] = Object.freeze([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'OPTIONS',
  'PATCH',
  'TRACE',
  'CONNECT',
  'PROPFIND',
  'PROPPATCH',
  'MKCOL',
  'COPY',
  'MOVE',
  'LOCK',
  'UNLOCK',
  'REPORT',
])
const METHOD_PREFIXES: readonly Buffer[] = HTTP_METHODS.map((m) => Buffer.from(`${m} `, 'latin1'))
const TLS_MAJOR_VERSION = 0x03

/**
 * Decides which sniffer to run from the first bytes of a tunnel: a TLS
 * handshake record (0x16 0x03), a request line starting with a known method
 * and a space, or anything else. `incomplete` while the bytes so far are still
 * a prefix of one of those.
 */
export function classifyFirstBytes(data: Buffer): FirstBytesClass {
  if (data.length === 0) return 'incomplete'
  if (looksLikeTls(data[0]!)) {
    if (data.length < 2) return 'incomplete'
    return data[1] === TLS_MAJOR_VERSION ? 'tls' : 'other'
  }
  let couldBeHttp = false
  for (const prefix of METHOD_PREFIXES) {
    const n = Math.min(prefix.length, data.length)
    if (data.compare(prefix, 0, n, 0, n) !== 0) continue
    if (n === prefix.length) return 'http'
    couldBeHttp = true
  }
  return couldBeHttp ? 'incomplete' : 'other'
}

// Longest registered methods are ~17 characters (UPDATEREDIRECTREF); a bound
// keeps the check on an unfinished request line constant-time.
const MAX_METHOD_LENGTH = 32

const CR = 0x0d
const LF = 0x0a
const SP = 0x20
const HTAB = 0x09
const NUL = 0x00
const COLON = 0x3a

// RFC 9110 §5.6.2 tchar.
const TCHAR = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1
}

function invalid(error: string): HttpHeadResult {
  return { status: 'invalid', error }
}

/**
 * Parses the request line and headers at the start of `data`. Never throws.
 * Bytes after the head (a body, pipelined requests) are not looked at.
 */
export function parseHttpHead(data: Buffer): HttpHeadResult {
  const window = data.subarray(0, Math.min(data.length, MAX_HTTP_HEAD_BYTES))
  // The caller re-parses the whole buffer each time bytes arrive, so this pass
  // only hops from LF to LF (memchr speed, at most MAX_HTTP_HEADER_FIELDS + 2
  // hops) to find the end of the head; the full validation runs once, on the
  // complete head. Each early refusal here is for something no later byte can
  // repair, so a verdict never changes as more bytes arrive.
  let lineStart = 0
  for (let lines = 0; ; lines++) {
    const lf = window.indexOf(LF, lineStart)
    if (lf < 0) break
    // A lone LF ends a line for some parsers and not for others: refuse it.
    if (lf === lineStart || window[lf - 1] !== CR) return invalid('bare LF line ending')
    if (lf === lineStart + 1) {
      if (lines === 0) return invalid('empty request line')
      return parseCompleteHead(window.subarray(0, lf + 1))
    }
    if (lines > MAX_HTTP_HEADER_FIELDS) {
      return invalid(`more than ${MAX_HTTP_HEADER_FIELDS} header fields`)
    }
    lineStart = lf + 1
  }

  if (window.includes(NUL)) return invalid('NUL byte in request head')
  const methodError = checkMethodPrefix(window)
  if (methodError !== null) return invalid(methodError)
  if (window.length >= MAX_HTTP_HEAD_BYTES) {
    return invalid(`request head larger than ${MAX_HTTP_HEAD_BYTES} bytes`)
  }
  return { status: 'incomplete' }
}

/** Validates a head that ends with CRLF CRLF, line by line. */
function parseCompleteHead(head: Buffer): HttpHeadResult {
  let requestLine: RequestLine | null = null
  let hostCount = 0
  let host = ''
  let lineStart = 0
  for (;;) {
    const lf = head.indexOf(LF, lineStart)
    // A lone LF ends a line for some parsers and not for others: refuse it.
    if (lf === lineStart || head[lf - 1] !== CR) return invalid('bare LF line ending')
    const line = head.subarray(lineStart, lf - 1)
    lineStart = lf + 1
    if (line.includes(NUL)) return invalid('NUL byte in request head')

    if (requestLine === null) {
      const parsed = parseRequestLine(line)
      if ('error' in parsed) return invalid(parsed.error)
      requestLine = parsed
    } else if (line.length === 0) {
      return finish(requestLine, hostCount, host, lineStart)
    } else {
      const header = parseHeaderLine(line)
      if ('error' in header) return invalid(header.error)
      if (header.name.toLowerCase() === 'host') {
        hostCount++
        host = header.value
      }
    }
  }
}

interface RequestLine {
  readonly method: string
  readonly target: string
  readonly version: HttpVersion
}

/** `method SP request-target SP HTTP-version`, single spaces, nothing else. */
function parseRequestLine(line: Buffer): RequestLine | { error: string } {
  const firstSp = line.indexOf(SP)
  if (firstSp === 0) return { error: 'malformed request line' }
  const methodError = checkMethodPrefix(line)
  if (methodError !== null) return { error: methodError }
  if (firstSp < 0) return { error: 'malformed request line' }
  const secondSp = line.indexOf(SP, firstSp + 1)
  if (secondSp < 0) return { error: 'malformed request line' }
  if (secondSp === firstSp + 1) return { error: 'empty request target' }
  for (let i = firstSp + 1; i < secondSp; i++) {
    const c = line[i]!
    // URIs are ASCII (RFC 3986); controls, DEL and raw 8-bit bytes are refused.
    if (c <= SP || c >= 0x7f) return { error: 'invalid byte in request target' }
  }
  const versionText = line.toString('latin1', secondSp + 1)
  if (versionText !== 'HTTP/1.1' && versionText !== 'HTTP/1.0') {
    return { error: 'unsupported HTTP version' }
  }
  const method = line.toString('latin1', 0, firstSp)
  const target = line.toString('latin1', firstSp + 1, secondSp)
  const formError = checkTargetForm(method, target)
  if (formError !== null) return { error: formError }
  return { method, target, version: versionText }
}

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/** RFC 9112 §3.2: which request-target form each method may use. */
function checkTargetForm(method: string, target: string): string | null {
  if (method === 'CONNECT') {
    // authority-form: host ":" port, nothing that could make it a URI.
    return /^[^/?#@]+:[0-9]+$/.test(target) ? null : 'CONNECT target is not host:port'
  }
  if (target === '*') return method === 'OPTIONS' ? null : 'asterisk target outside OPTIONS'
  if (target.startsWith('/') || ABSOLUTE_FORM.test(target)) return null
  return 'request target is neither origin-form nor absolute-form'
}

/** The authority a request target names itself, if any (absolute- or authority-form). */
function targetAuthority(method: string, target: string): string | null {
  if (method === 'CONNECT') return target
  const scheme = ABSOLUTE_FORM.exec(target)
  if (scheme === null) return null
  const rest = target.slice(scheme[0].length)
  const end = rest.search(/[/?#]/)
  return end < 0 ? rest : rest.slice(0, end)
}

function parseHeaderLine(line: Buffer): { name: string; value: string } | { error: string } {
  const first = line[0]
  // obs-fold (RFC 9112 §5.2), or whitespace between the request line and the
  // first header (§2.2): both hide a header from parsers that unfold differently.
  if (first === SP || first === HTAB) return { error: 'obs-fold or leading whitespace in header' }
  const colon = line.indexOf(COLON)
  if (colon <= 0) return { error: 'malformed header line' }
  for (let i = 0; i < colon; i++) {
    // Also catches "Name : value" (RFC 9112 §5.1 requires refusing it).
    if (TCHAR[line[i]!] !== 1) return { error: 'invalid header name' }
  }
  for (let i = colon + 1; i < line.length; i++) {
    const c = line[i]!
    // field-value: VCHAR, obs-text, SP, HTAB. CR and other controls are refused.
    if ((c < SP && c !== HTAB) || c === 0x7f) return { error: 'control byte in header value' }
  }
  // Trim OWS by index: a /[ \t]+$/ regex is quadratic on a long run of
  // spaces followed by another byte, which a hostile client can send.
  let start = colon + 1
  let end = line.length
  while (start < end && (line[start] === SP || line[start] === HTAB)) start++
  while (end > start && (line[end - 1] === SP || line[end - 1] === HTAB)) end--
  return { name: line.toString('latin1', 0, colon), value: line.toString('latin1', start, end) }
}

// uri-host [ ":" port ] in the spellings real clients use: reg-name letters,
// digits, '.', '-', '_', '~', and IPv6 brackets. Commas, '@', '%', spaces and
// 8-bit bytes are refused: each is a way to make two parsers see two hosts.
const HOST_VALUE = /^[A-Za-z0-9._~\-[\]:]+$/

function finish(
  requestLine: RequestLine,
  hostCount: number,
  host: string,
  headerBytes: number,
): HttpHeadResult {
  if (hostCount === 0) return invalid('no Host header')
  if (hostCount > 1) return invalid('more than one Host header')
  if (host !== '' && !HOST_VALUE.test(host)) return invalid('Host header has invalid characters')
  const authority = targetAuthority(requestLine.method, requestLine.target)
  if (authority !== null) {
    if (authority.includes('@')) return invalid('userinfo in request target')
    // A server uses the target's authority over Host (RFC 9112 §3.2.2), so a
    // disagreement would let the request reach a host the policy never saw.
    if (authority.toLowerCase() !== host.toLowerCase()) {
      return invalid('request target authority does not match Host')
    }
  }
  return {
    status: 'ok',
    method: requestLine.method,
    target: requestLine.target,
    version: requestLine.version,
    host: host === '' ? null : host,
    headerBytes,
  }
}

/**
 * Refuses a request line whose method already cannot be a token. Reads at most
 * MAX_METHOD_LENGTH + 1 bytes, so it is cheap on every call.
 */
function checkMethodPrefix(data: Buffer): string | null {
  const limit = Math.min(data.length, MAX_METHOD_LENGTH + 1)
  for (let i = 0; i < limit; i++) {
    const c = data[i]!
    if (c === SP) return i === 0 ? 'malformed request line' : null
    if (TCHAR[c] !== 1) return 'invalid method'
  }
  return limit > MAX_METHOD_LENGTH ? 'method too long' : null
}
