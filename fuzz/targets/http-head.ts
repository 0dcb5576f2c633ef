// Fuzz target: the one HTTP head reader (src/proxy/wire.ts) that reads CONNECT
// heads on the HTTP proxy port, a parent proxy's answer to CONNECT and an
// origin's answer to a WebSocket upgrade.
//
// Properties: it answers with a head, "not yet", or its own HttpHeadError, and
// throws nothing else; a verdict never changes as more bytes arrive, whether
// they come all at once or in pieces; a head ends at the first CRLF CRLF and
// its lines are what the bytes say, without CR, LF or other control bytes; the
// size limit holds (inputs whose first byte is odd are also read stretched past
// it, since the fuzzer's inputs are shorter than the limit).

import {
  HttpHeadError,
  HttpHeadReader,
  MAX_HEAD_BYTES,
  parseHttpHead,
} from '../../src/proxy/wire.js'
import { checkIncremental } from '../lib/incremental.js'
import { onlyThrows, property, same, wasRefused } from '../lib/property.js'

type Reading =
  | { readonly status: 'incomplete' }
  | { readonly status: 'invalid'; readonly error: string }
  | {
      readonly status: 'ok'
      readonly startLine: string
      readonly headers: readonly (readonly [string, string])[]
      readonly size: number
    }

function read(data: Buffer): Reading {
  const head = onlyThrows('parseHttpHead', [HttpHeadError], () => parseHttpHead(data))
  if (wasRefused(head)) return { status: 'invalid', error: head.refused.message }
  if (head === undefined) return { status: 'incomplete' }
  return { status: 'ok', startLine: head.startLine, headers: head.headers, size: head.size }
}

/** The same bytes pushed into one reader in pieces of varying size (and how many were pushed). */
function readInPieces(data: Buffer): Reading & { rest?: Buffer; pushed: number } {
  const reader = new HttpHeadReader()
  let at = 0
  for (let piece = 1; at < data.length; piece = (piece * 7 + 3) % 61) {
    const chunk = data.subarray(at, at + piece + 1)
    at += chunk.length
    const done = onlyThrows('HttpHeadReader.push', [HttpHeadError], () => reader.push(chunk))
    if (wasRefused(done)) return { status: 'invalid', error: done.refused.message, pushed: at }
    if (done) {
      const { startLine, headers, size } = done.head
      return { status: 'ok', startLine, headers, size, rest: done.rest, pushed: at }
    }
  }
  return { status: 'incomplete', pushed: at }
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/

function checkWellFormed(data: Buffer, reading: Reading): void {
  const end = data.indexOf('\r\n\r\n', 0, 'latin1')
  if (reading.status === 'invalid') {
    property(reading.error.length > 0, 'an error without a reason', reading)
    return
  }
  if (reading.status === 'incomplete') {
    property(end < 0, 'incomplete although the head ends', end)
    property(data.length < MAX_HEAD_BYTES, 'incomplete past the size limit', data.length)
    return
  }
  property(reading.size <= MAX_HEAD_BYTES, 'a head larger than the limit', reading.size)
  same(reading.size, end + 4, 'the head does not end at the first CRLF CRLF')
  const lines = data.toString('latin1', 0, end).split('\r\n')
  same(reading.startLine, lines[0], 'the start line is not what was sent')
  same(reading.headers.length, lines.length - 1, 'not one header per line')
  for (const text of [reading.startLine, ...reading.headers.flat()])
    property(!CONTROL.test(text), 'a control byte in a line', text)
  for (const [name] of reading.headers)
    property(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name), 'a header name that is not a token', name)
}

/** `data` repeated until it is longer than the size limit. */
function stretch(data: Buffer): Buffer {
  return Buffer.concat(Array<Buffer>(Math.ceil((MAX_HEAD_BYTES + 8) / data.length)).fill(data))
}

function check(data: Buffer): void {
  const full = read(data)
  checkWellFormed(data, full)
  checkIncremental('the HTTP head reader', read, data, full)
  const pieces = readInPieces(data)
  same(pieces.status, full.status, 'a verdict changed when the bytes came in pieces')
  if (pieces.status === 'ok' && full.status === 'ok') {
    same(pieces.startLine, full.startLine, 'the start line changed when read in pieces')
    same(pieces.headers, full.headers, 'the headers changed when read in pieces')
    same(
      pieces.rest,
      data.subarray(full.size, pieces.pushed),
      'the bytes pushed after the head are not the rest',
    )
  }
}

export function fuzz(data: Buffer): void {
  check(data)
  if (data.length > 0 && ((data[0] as number) & 1) === 1) check(stretch(data))
}
