// A Java trust store (JKS) holding certificates only. A JVM ignores the PEM
// bundle that OpenSSL-based tools read; it trusts what
// `-Djavax.net.ssl.trustStore` names instead. JKS rather than PKCS#12: Java
// only trusts a certificate in a PKCS#12 store that carries Oracle's private
// trust attribute, while every JDK (8 to today's) reads JKS trusted-certificate
// entries as they are. The format is fixed and small (sun.security.provider.JavaKeyStore):
//
//   0xFEEDFEED, version 2, entry count,
//   per entry: tag 2 (trusted certificate), alias, time (ms), "X.509", DER length, DER,
//   SHA-1(password as UTF-16BE, "Mighty Aphrodite", everything before) as an integrity check.

import { createHash } from 'node:crypto'

/** The password a JVM is given for the store. It guards nothing secret: the store holds public certificates. */
export const TRUST_STORE_PASSWORD = 'changeit'

export interface TrustedCertificate {
  /** Unique within the store; Java compares aliases without case. */
  readonly alias: string
  readonly der: Uint8Array
}

function javaUtf(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  const length = Buffer.alloc(2)
  length.writeUInt16BE(bytes.length)
  return Buffer.concat([length, bytes])
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

export function javaTrustStore(
  certificates: readonly TrustedCertificate[],
  password = TRUST_STORE_PASSWORD,
  now = Date.now(),
): Buffer {
  const seen = new Set<string>()
  const parts: Buffer[] = [u32(0xfeedfeed), u32(2), u32(certificates.length)]
  const time = Buffer.alloc(8)
  time.writeBigUInt64BE(BigInt(now))
  for (const { alias, der } of certificates) {
    const key = alias.toLowerCase()
    if (seen.has(key)) throw new Error(`trust store alias "${alias}" is used twice`)
    seen.add(key)
    parts.push(u32(2), javaUtf(key), time, javaUtf('X.509'), u32(der.length), Buffer.from(der))
  }
  const body = Buffer.concat(parts)
  const digest = createHash('sha1')
    .update(Buffer.from(password, 'utf16le').swap16())
    .update('Mighty Aphrodite', 'utf8')
    .update(body)
    .digest()
  return Buffer.concat([body, digest])
}
