// The leaf cache: hits, misses, concurrent requests for one host, the LRU
// bound, and renewal before expiry (with a clock the test moves).

import { X509Certificate } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  createCertificateAuthority,
  loadCertificateAuthority,
  type CertificateAuthority,
} from '../../../src/tls/ca.js'
import { LeafError, LeafMinter } from '../../../src/tls/leaf.js'

let ca: CertificateAuthority

beforeAll(async () => {
  ca = loadCertificateAuthority(await createCertificateAuthority({ commonName: 'cache test' }))
})

describe('LeafMinter cache', () => {
  it('mints once per host and serves every spelling of it from the cache', async () => {
    const minter = new LeafMinter(ca)
    const first = await minter.leafFor('api.example.test')
    expect(await minter.leafFor('API.Example.Test.')).toBe(first)
    expect(minter.stats).toEqual({ minted: 1, hits: 1 })
    await minter.leafFor('other.example.test')
    expect(minter.stats.minted).toBe(2)
  })

  it('shares one mint between concurrent requests for a host', async () => {
    const minter = new LeafMinter(ca)
    const leaves = await Promise.all(Array.from({ length: 5 }, () => minter.leafFor('a.test')))
    expect(new Set(leaves).size).toBe(1)
    expect(minter.stats.minted).toBe(1)
  })

  it('keeps at most `capacity` leaves, dropping the least recently used', async () => {
    const minter = new LeafMinter(ca, { capacity: 2 })
    const a = await minter.leafFor('a.test')
    await minter.leafFor('b.test')
    await minter.leafFor('a.test') // a is now the most recently used
    await minter.leafFor('c.test') // evicts b
    expect(minter.size).toBe(2)
    expect(await minter.leafFor('a.test')).toBe(a)
    const minted = minter.stats.minted
    await minter.leafFor('b.test')
    expect(minter.stats.minted).toBe(minted + 1)
  })

  it('mints a new leaf once the cached one is within renewBeforeMs of expiry', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z')
    const minter = new LeafMinter(ca, {
      validityMs: 10 * 3600_000,
      renewBeforeMs: 3600_000,
      now: () => now,
    })
    const first = await minter.leafFor('a.test')
    expect(first.notAfter.toISOString()).toBe('2030-01-01T10:00:00.000Z')
    now += 8 * 3600_000 // 2 h left: still served
    expect(await minter.leafFor('a.test')).toBe(first)
    now += 1.5 * 3600_000 // 30 min left: renewed
    const second = await minter.leafFor('a.test')
    expect(second).not.toBe(first)
    expect(second.notAfter.getTime()).toBe(now + 10 * 3600_000)
    expect(minter.stats.minted).toBe(2)
  })

  it('makes short-lived leaves that start an hour early, signed by the CA', async () => {
    const now = Date.now()
    const leaf = await new LeafMinter(ca).leafFor('a.test')
    const cert = new X509Certificate(leaf.cert)
    expect(cert.checkIssued(ca.certificate)).toBe(true)
    expect(cert.verify(ca.certificate.publicKey)).toBe(true)
    expect(cert.ca).toBe(false)
    expect(cert.subjectAltName).toBe('DNS:a.test')
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']) // extended key usage: serverAuth
    const from = Date.parse(cert.validFrom)
    const to = Date.parse(cert.validTo)
    expect(now - from).toBeGreaterThanOrEqual(3599_000)
    expect(now - from).toBeLessThan(3600_000 + 60_000)
    expect(to - from).toBeLessThanOrEqual(25 * 3600_000)
  })

  it('uses iPAddress for IPs and keeps a SAN-only subject for names past 64 characters', async () => {
    const minter = new LeafMinter(ca)
    const ip = new X509Certificate((await minter.leafFor('0x7f.1')).cert)
    expect(ip.subjectAltName).toBe('IP Address:127.0.0.1')
    const long = `${'a'.repeat(60)}.example.test`
    const cert = new X509Certificate((await minter.leafFor(long)).cert)
    expect(cert.subjectAltName).toBe(`DNS:${long}`)
    expect(cert.subject).not.toContain('CN=')
  })

  it('refuses a host that is not a name or an address', async () => {
    const minter = new LeafMinter(ca)
    await expect(minter.leafFor('bad..name')).rejects.toThrow(LeafError)
    await expect(minter.leafFor('')).rejects.toThrow(/cannot mint a certificate for ""/)
  })
})
