// Fuzz target: the TLS ClientHello parser (src/proxy/sniff/client-hello.ts).
//
// Properties: it never throws; every answer is a well-formed status object;
// a verdict never changes as more bytes arrive (the proxy re-parses a growing
// buffer); an `ok` answer describes bytes that are really there (the SNI occurs
// in the hello as sent, `consumed` covers whole records).

import {
  MAX_CLIENT_HELLO_BYTES,
  parseClientHello,
  type ClientHelloResult,
} from '../../src/proxy/sniff/client-hello.js'
import { checkIncremental } from '../lib/incremental.js'
import { property, PropertyViolation } from '../lib/property.js'

function parse(data: Buffer): ClientHelloResult {
  try {
    return parseClientHello(data)
  } catch (err) {
    throw new PropertyViolation(`parseClientHello threw: ${String(err)}`)
  }
}

function checkWellFormed(data: Buffer, result: ClientHelloResult): void {
  if (result.status === 'invalid') {
    property(
      typeof result.error === 'string' && result.error.length > 0,
      'invalid without a reason',
      result,
    )
    return
  }
  if (result.status === 'incomplete') {
    property(
      data.length < MAX_CLIENT_HELLO_BYTES + 5,
      'incomplete past the size bound',
      data.length,
    )
    return
  }
  property(result.status === 'ok', 'unknown status', result)
  const { sni, ech, alpn, legacyVersion, consumed } = result
  property(
    Number.isInteger(consumed) && consumed > 5 && consumed <= data.length,
    'consumed out of range',
    consumed,
    data.length,
  )
  property(consumed <= MAX_CLIENT_HELLO_BYTES, 'consumed past the size bound', consumed)
  property(typeof ech === 'boolean', 'ech is not a boolean', ech)
  property(
    legacyVersion >= 0x0300 && legacyVersion <= 0x0304,
    'legacy_version out of range',
    legacyVersion,
  )
  property(
    Array.isArray(alpn) && alpn.every((p) => typeof p === 'string' && p.length > 0),
    'bad ALPN list',
    alpn,
  )
  if (sni !== null) {
    property(/^[\x21-\x7e]+$/.test(sni), 'SNI with bytes outside visible ASCII', sni)
    property(
      handshakeBytes(data, consumed).includes(Buffer.from(sni, 'latin1')),
      'SNI not present in the hello',
      sni,
    )
  }
}

/** The handshake bytes the records in data[0, consumed) carry, record headers taken out. */
function handshakeBytes(data: Buffer, consumed: number): Buffer {
  const payloads: Buffer[] = []
  for (let offset = 0; offset + 5 <= consumed;) {
    const length = data.readUInt16BE(offset + 3)
    payloads.push(data.subarray(offset + 5, offset + 5 + length))
    offset += 5 + length
  }
  return Buffer.concat(payloads)
}

export function fuzz(data: Buffer): void {
  const result = parse(data)
  checkWellFormed(data, result)
  checkIncremental('parseClientHello', parse, data, result)
}
