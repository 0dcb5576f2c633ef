// CA creation and the checks an operator's CA goes through before it signs.

import { execFileSync } from 'node:child_process'
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  CertificateAuthorityError,
  createCertificateAuthority,
  loadCertificateAuthority,
} from '../../../src/tls/ca.js'
import { LeafMinter } from '../../../src/tls/leaf.js'

function opensslText(pem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem }).toString()
}

describe('createCertificateAuthority', () => {
  it('makes an ECDSA P-256 CA with critical basicConstraints and keyCertSign', async () => {
    const material = await createCertificateAuthority({ commonName: 'isorun sandbox abc' })
    const cert = new X509Certificate(material.cert)
    expect(cert.ca).toBe(true)
    expect(cert.subject).toBe('O=isorun\nCN=isorun sandbox abc')
    const text = opensslText(material.cert)
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/)
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/)
    expect(text).toMatch(/Subject Key Identifier/)
    expect(text).toMatch(/NIST CURVE: P-256/)
    expect(material.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    const ca = loadCertificateAuthority(material)
    expect(ca.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
  })
})

describe('loadCertificateAuthority', () => {
  it('accepts an RSA CA made by openssl, in PKCS#1 form, and signs leaves with it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isorun-ca-'))
    try {
      const opts = { cwd: dir, stdio: 'ignore' } as const
      execFileSync('openssl', ['genrsa', '-traditional', '-out', 'k.pem', '2048'], opts)
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-key',
          'k.pem',
          '-out',
          'c.pem',
          '-days',
          '2',
          '-subj',
          '/CN=operator CA',
        ],
        opts,
      )
      expect(readFileSync(join(dir, 'k.pem'), 'utf8')).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/)
      const ca = loadCertificateAuthority({
        cert: readFileSync(join(dir, 'c.pem'), 'utf8'),
        key: readFileSync(join(dir, 'k.pem'), 'utf8'),
      })
      expect(ca.algorithm.name).toBe('RSASSA-PKCS1-v1_5')
      const leaf = new X509Certificate((await new LeafMinter(ca).leafFor('a.test')).cert)
      expect(leaf.checkIssued(ca.certificate)).toBe(true)
      expect(leaf.verify(ca.certificate.publicKey)).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses a key that is not the certificate’s, without printing either', async () => {
    const a = await createCertificateAuthority({ commonName: 'a' })
    const b = await createCertificateAuthority({ commonName: 'b' })
    let error: Error | undefined
    try {
      loadCertificateAuthority({ cert: a.cert, key: b.key })
    } catch (err) {
      error = err as Error
    }
    expect(error).toBeInstanceOf(CertificateAuthorityError)
    expect(error?.message).toBe('the CA key does not belong to the CA certificate')
  })

  it('refuses a leaf certificate, garbage, an expired CA and unsupported keys', async () => {
    const ca = loadCertificateAuthority(await createCertificateAuthority({ commonName: 'x' }))
    const leaf = await new LeafMinter(ca).leafFor('a.test')
    expect(() => loadCertificateAuthority(leaf)).toThrow(/is not a CA/)
    expect(() => loadCertificateAuthority({ cert: 'nope', key: leaf.key })).toThrow(
      /not a PEM certificate/,
    )
    expect(() => loadCertificateAuthority({ cert: ca.cert, key: 'nope' })).toThrow(
      /not a PEM private key/,
    )
    const old = await createCertificateAuthority({
      commonName: 'old',
      validityDays: 1,
      now: new Date(Date.now() - 3 * 24 * 3600_000),
    })
    expect(() => loadCertificateAuthority(old)).toThrow(/expired on/)
    const { privateKey } = generateKeyPairSync('ed25519')
    const ed = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
    expect(() => loadCertificateAuthority({ cert: ca.cert, key: ed })).toThrow(
      CertificateAuthorityError,
    )
  })
})
