// Certificate authorities for TLS interception: a new one per sandbox (made by
// the runner, or by `isorun proxy --ca-dir`), or an operator's own
// (`--ca-cert/--ca-key`), checked before use. The private key never leaves the
// egress side: the runner's state directory and the proxy's memory.

import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto'
import { pemEncode } from './pem.js'
import { EC_P256, loadX509 } from './x509.js'

/** A CA as PEM text: the certificate, and its private key (PKCS#8). */
export interface CaMaterial {
  readonly cert: string
  readonly key: string
}

export class CertificateAuthorityError extends Error {}

/** What a leaf is signed with, in WebCrypto terms, for each kind of CA key. */
export type SigningAlgorithm =
  | { readonly name: 'ECDSA'; readonly namedCurve: 'P-256' | 'P-384'; readonly hash: string }
  | { readonly name: 'RSASSA-PKCS1-v1_5'; readonly hash: 'SHA-256' }

/** A CA that passed every check, ready to sign leaves. */
export interface CertificateAuthority {
  readonly cert: string
  readonly certificate: X509Certificate
  readonly key: KeyObject
  readonly algorithm: SigningAlgorithm
  /** SHA-256 fingerprint of the certificate, `AB:CD:…`: safe to show and log. */
  readonly fingerprint: string
  readonly notAfter: Date
}

const DAY_MS = 24 * 3600_000
/** Clocks inside a sandbox or on a client may run a little behind ours. */
export const CLOCK_SKEW_MS = 60 * 60_000

/**
 * A new CA: ECDSA P-256, basicConstraints CA:TRUE (critical, path length 0:
 * it signs leaves only), keyUsage keyCertSign + cRLSign (critical), a subject
 * key identifier. `validityDays` covers the longest life of what trusts it.
 */
export async function createCertificateAuthority(options: {
  readonly commonName: string
  readonly validityDays?: number
  readonly now?: Date
}): Promise<CaMaterial> {
  const x509 = await loadX509()
  const now = options.now?.getTime() ?? Date.now()
  const keys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ O: ['isorun'] }, { CN: [options.commonName] }],
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + (options.validityDays ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey))
  return { cert: cert.toString('pem'), key: pemEncode('PRIVATE KEY', pkcs8) }
}

/** A positive 128-bit serial number, as hex (RFC 5280: at most 20 octets, unpredictable). */
export function serialNumber(): string {
  const bytes = randomBytes(16)
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01 // positive, and no leading zero octet
  return bytes.toString('hex')
}

/**
 * Checks a CA before it signs anything: a CA certificate, valid now, whose key
 * is the one given, of a kind we sign with (EC P-256/P-384 or RSA ≥ 2048).
 * Errors say what is wrong and never include the key.
 */
export function loadCertificateAuthority(
  material: CaMaterial,
  now = new Date(),
): CertificateAuthority {
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(material.cert)
  } catch {
    throw new CertificateAuthorityError(
      'the CA certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----)',
    )
  }
  let key: KeyObject
  try {
    key = createPrivateKey(material.key)
  } catch {
    throw new CertificateAuthorityError(
      'the CA key is not a PEM private key (PKCS#8, SEC1 or PKCS#1, unencrypted)',
    )
  }
  if (!certificate.ca)
    throw new CertificateAuthorityError(
      `the certificate ${certificate.subject.replace(/\n/g, ', ')} is not a CA (basicConstraints CA:TRUE is missing)`,
    )
  if (!certificate.checkPrivateKey(key))
    throw new CertificateAuthorityError('the CA key does not belong to the CA certificate')
  const notAfter = new Date(certificate.validTo)
  if (notAfter.getTime() <= now.getTime())
    throw new CertificateAuthorityError(
      `the CA certificate expired on ${notAfter.toISOString()}; make a new one`,
    )
  if (new Date(certificate.validFrom).getTime() > now.getTime())
    throw new CertificateAuthorityError(
      `the CA certificate is not valid before ${new Date(certificate.validFrom).toISOString()}; check the clock`,
    )
  return {
    cert: certificate.toString(),
    certificate,
    key,
    algorithm: signingAlgorithm(key),
    fingerprint: certificate.fingerprint256,
    notAfter,
  }
}

function signingAlgorithm(key: KeyObject): SigningAlgorithm {
  const details = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1')
      return { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
    if (details.namedCurve === 'secp384r1')
      return { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' }
  }
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048)
    return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
  throw new CertificateAuthorityError(
    `the CA key is ${key.asymmetricKeyType ?? 'of an unknown type'}${details.namedCurve ? ` ${details.namedCurve}` : ''}${details.modulusLength ? ` ${details.modulusLength} bits` : ''}; use ECDSA P-256 or P-384, or RSA of 2048 bits or more`,
  )
}
