// Fuzz target: the HTTP head reader that sniffs the first request in a tunnel
// (through fuzz/adapters/http-head.ts, so an API change is one edit there).
//
// Properties: it never throws; every answer is a well-formed status object; a
// verdict never changes as more bytes arrive; an `ok` head really ends with
// CRLF CRLF where it says, and its request line and Host are what the bytes say.
// The first-bytes classifier is checked for the same stability.

import { classifyTunnelStart, readHttpHead, type HeadReading } from '../adapters/http-head.js'
import { checkIncremental } from '../lib/incremental.js'
import { property, PropertyViolation, same } from '../lib/property.js'

function parse(data: Buffer): HeadReading {
  try {
    return readHttpHead(data)
  } catch (err) {
    throw new PropertyViolation(`the HTTP head reader threw: ${String(err)}`)
  }
}

function classify(data: Buffer): { readonly status: string } {
  try {
    return classifyTunnelStart(data)
  } catch (err) {
    throw new PropertyViolation(`the first-bytes classifier threw: ${String(err)}`)
  }
}

function checkWellFormed(data: Buffer, head: HeadReading): void {
  if (head.status === 'invalid') {
    property(
      typeof head.error === 'string' && head.error.length > 0,
      'invalid without a reason',
      head,
    )
    return
  }
  if (head.status !== 'ok') return
  const { method, target, version, host, headerBytes } = head
  property(
    Number.isInteger(headerBytes) && headerBytes <= data.length,
    'headerBytes out of range',
    headerBytes,
  )
  same(
    data.toString('latin1', headerBytes - 4, headerBytes),
    '\r\n\r\n',
    'the head does not end with CRLF CRLF where it says',
  )
  const requestLine = data.toString('latin1', 0, data.indexOf('\r\n'))
  same(requestLine, `${method} ${target} ${version}`, 'the request line is not what was sent')
  property(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(method), 'the method is not a token', method)
  property(/^[\x21-\x7e]+$/.test(target), 'a byte outside visible ASCII in the target', target)
  if (host !== null) {
    property(
      /^[\x21-\x7e]+$/.test(host) && !/[,@]/.test(host),
      'a Host with bytes outside visible ASCII, or "," or "@"',
      host,
    )
    const head = data.toString('latin1', 0, headerBytes).toLowerCase()
    property(head.includes(host.toLowerCase()), 'the Host is not in the head', host)
  }
}

export function fuzz(data: Buffer): void {
  const head = parse(data)
  checkWellFormed(data, head)
  checkIncremental('the HTTP head reader', parse, data, head)
  checkIncremental('the first-bytes classifier', classify, data, classify(data))
}
