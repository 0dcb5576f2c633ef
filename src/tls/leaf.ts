// Leaf certificates for intercepted hosts, signed by the sandbox's CA. The
// interception stage asks `leafFor(hostname)` for each TLS connection it
// terminates; leaves are cached (bounded, least recently used first out) and
// minted again before they expire.
//
// What strict clients (OpenSSL, Go, Java, browsers) check, and a leaf has:
// the name as a SAN (dNSName, or iPAddress for an IP), extendedKeyUsage
// serverAuth, keyUsage digitalSignature, basicConstraints CA:FALSE, subject
// and authority key identifiers, a validity a day long that starts an hour
// early (clock skew), a random serial, ECDSA P-256 with SHA-256.

import type { webcrypto } from 'node:crypto'
import type { SecureContext } from 'node:tls'
import { canonicalHost, HostError } from '../policy/index.js'
import { CLOCK_SKEW_MS, serialNumber, type CertificateAuthority } from './ca.js'
import { pemEncode } from './pem.js'
import { EC_P256, loadX509, type X509 } from './x509.js'

export interface Leaf {
  /** The leaf's private key, PEM (PKCS#8). */
  readonly key: string
  /** The leaf certificate, PEM. */
  readonly cert: string
  readonly notAfter: Date
  /** `tls.createSecureContext({ key, cert })`, made once per leaf. */
  readonly context: SecureContext
}

export interface LeafMinterOptions {
  /** Leaves kept; the least recently used goes first. Default 1000. */
  readonly capacity?: number
  /** How long a leaf is valid from now. Default 24 hours. */
  readonly validityMs?: number
  /** A cached leaf with less than this left is minted again. Default 2 hours. */
  readonly renewBeforeMs?: number
  /** The clock, for tests. */
  readonly now?: () => number
}

export class LeafError extends Error {}

/** Counters for tests and metrics. */
export interface LeafStats {
  minted: number
  hits: number
}

export class LeafMinter {
  private readonly cache = new Map<string, Leaf>()
  /** Leaves being minted: concurrent handshakes for one host share one. */
  private readonly pending = new Map<string, Promise<Leaf>>()
  private readonly capacity: number
  private readonly validityMs: number
  private readonly renewBeforeMs: number
  private readonly now: () => number
  private issuer: Promise<Issuer> | undefined
  readonly stats: LeafStats = { minted: 0, hits: 0 }

  constructor(
    readonly ca: CertificateAuthority,
    options: LeafMinterOptions = {},
  ) {
    this.capacity = options.capacity ?? 1000
    this.validityMs = options.validityMs ?? 24 * 3600_000
    this.renewBeforeMs = options.renewBeforeMs ?? 2 * 3600_000
    this.now = options.now ?? Date.now
    if (this.renewBeforeMs >= this.validityMs)
      throw new LeafError('renewBeforeMs must be shorter than validityMs')
  }

  get size(): number {
    return this.cache.size
  }

  /** A leaf for a host name or IP address (any spelling; canonicalised first). */
  leafFor(hostname: string): Promise<Leaf> {
    let host: { kind: 'name' | 'ip'; text: string }
    try {
      host = canonicalName(hostname)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    const cached = this.cache.get(host.text)
    if (cached && cached.notAfter.getTime() - this.now() > this.renewBeforeMs) {
      // Most recently used last: Map keeps insertion order.
      this.cache.delete(host.text)
      this.cache.set(host.text, cached)
      this.stats.hits++
      return Promise.resolve(cached)
    }
    let minting = this.pending.get(host.text)
    if (!minting) {
      minting = this.mint(host).finally(() => this.pending.delete(host.text))
      this.pending.set(host.text, minting)
    }
    return minting
  }

  private async mint(host: { kind: 'name' | 'ip'; text: string }): Promise<Leaf> {
    const x509 = await loadX509()
    this.issuer ??= issuerOf(x509, this.ca)
    const issuer = await this.issuer
    const keys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])
    const now = this.now()
    const notAfter = new Date(now + this.validityMs)
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      // The CN is limited to 64 characters; the SAN is what clients check anyway.
      subject: host.text.length <= 64 ? [{ CN: [host.text] }] : [{ O: ['isorun'] }],
      // The CA's subject as it is encoded: Go compares the issuer's bytes with it.
      issuer: issuer.certificate.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter,
      publicKey: keys.publicKey,
      signingKey: issuer.signingKey,
      signingAlgorithm: this.ca.algorithm,
      extensions: await leafExtensions(x509, host, keys.publicKey, issuer),
    })
    const key = pemEncode(
      'PRIVATE KEY',
      new Uint8Array(await crypto.subtle.exportKey('pkcs8', keys.privateKey)),
    )
    const certPem = cert.toString('pem')
    const leaf: Leaf = {
      key,
      cert: certPem,
      notAfter,
      // node:tls is loaded here, not at start: a sidecar that never intercepts never holds it.
      context: (await import('node:tls')).createSecureContext({ key, cert: certPem }),
    }
    this.stats.minted++
    this.cache.delete(host.text)
    this.cache.set(host.text, leaf)
    while (this.cache.size > this.capacity) {
      const oldest = this.cache.keys().next().value as string
      this.cache.delete(oldest)
    }
    return leaf
  }
}

function canonicalName(hostname: string): { kind: 'name' | 'ip'; text: string } {
  try {
    const host = canonicalHost(hostname)
    return host.kind === 'name'
      ? { kind: 'name', text: host.name }
      : { kind: 'ip', text: host.text }
  } catch (err) {
    if (err instanceof HostError)
      throw new LeafError(`cannot mint a certificate for "${hostname}": ${err.message}`)
    throw err
  }
}

/** The CA as @peculiar/x509 sees it, and its key imported for WebCrypto signing. */
interface Issuer {
  readonly certificate: InstanceType<X509['X509Certificate']>
  readonly keyId: string | undefined
  readonly signingKey: webcrypto.CryptoKey
}

async function issuerOf(x509: X509, ca: CertificateAuthority): Promise<Issuer> {
  const certificate = new x509.X509Certificate(ca.cert)
  const der = ca.key.export({ format: 'der', type: 'pkcs8' })
  const algorithm =
    ca.algorithm.name === 'ECDSA'
      ? { name: 'ECDSA', namedCurve: ca.algorithm.namedCurve }
      : { name: ca.algorithm.name, hash: ca.algorithm.hash }
  return {
    certificate,
    keyId: certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    signingKey: await crypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']),
  }
}

async function leafExtensions(
  x509: X509,
  host: { kind: 'name' | 'ip'; text: string },
  publicKey: webcrypto.CryptoKey,
  issuer: Issuer,
): Promise<InstanceType<X509['Extension']>[]> {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    // Critical when the subject is empty of a name (RFC 5280 §4.2.1.6).
    new x509.SubjectAlternativeNameExtension(
      [{ type: host.kind === 'name' ? 'dns' : 'ip', value: host.text }],
      host.text.length > 64,
    ),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    issuer.keyId
      ? new x509.AuthorityKeyIdentifierExtension(issuer.keyId)
      : await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate.publicKey),
  ]
}
