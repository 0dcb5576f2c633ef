// The files and variables a sandbox gets: the merged bundle (the image's roots
// then the CA), the CA alone, the Java trust store, and the variables.

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rootCertificates } from 'node:tls'
import { describe, expect, it } from 'vitest'
import { createCertificateAuthority } from '../../../src/tls/ca.js'
import { pemCertificates } from '../../../src/tls/pem.js'
import {
  BUNDLE_VARIABLES,
  sandboxTrust,
  SANDBOX_TRUST_DIR,
  trustEnvironment,
} from '../../../src/tls/sandbox-trust.js'

const DEBIAN_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

describe('sandboxTrust', () => {
  it("merges the image's bundle with the CA, and keeps the CA alone too", async () => {
    const ca = await createCertificateAuthority({ commonName: 'merge test' })
    const system = readFileSync(DEBIAN_BUNDLE, 'utf8')
    const trust = sandboxTrust(ca.cert, { path: DEBIAN_BUNDLE, text: system })
    const bundle = trust.files['bundle.pem']?.toString() ?? ''
    const systemCount = pemCertificates(system).length
    expect(systemCount).toBeGreaterThan(50)
    expect(trust.roots).toEqual({ source: DEBIAN_BUNDLE, count: systemCount })
    const merged = pemCertificates(bundle)
    expect(merged).toHaveLength(systemCount + 1)
    expect(merged.at(-1)?.trim()).toBe(ca.cert.trim())
    expect(trust.files['ca.pem']?.toString().trim()).toBe(ca.cert.trim())
  })

  it('writes a JKS trust store that keytool reads, with every root and the CA', async (ctx) => {
    if (spawnSync('keytool', ['-help']).error) {
      ctx.skip('keytool is not installed (apt-get install default-jre-headless)')
      return
    }
    const ca = await createCertificateAuthority({ commonName: 'jks test' })
    const system = readFileSync(DEBIAN_BUNDLE, 'utf8')
    const trust = sandboxTrust(ca.cert, { path: DEBIAN_BUNDLE, text: system })
    const dir = mkdtempSync(join(tmpdir(), 'isorun-jks-'))
    try {
      const store = join(dir, 'truststore.jks')
      writeFileSync(store, trust.files['truststore.jks'] ?? Buffer.alloc(0))
      const list = execFileSync('keytool', [
        '-list',
        '-keystore',
        store,
        '-storepass',
        'changeit',
        '-storetype',
        'JKS',
      ]).toString()
      expect(list).toContain(`Your keystore contains ${trust.roots.count + 1} entries`)
      expect(list).toMatch(/isorun-sandbox-ca, .*trustedCertEntry/)
      // A wrong password fails the integrity check.
      const wrong = spawnSync('keytool', [
        '-list',
        '-keystore',
        store,
        '-storepass',
        'wrongpass',
        '-storetype',
        'JKS',
      ])
      expect(wrong.status).not.toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("falls back to Node's Mozilla roots when the image has no bundle", async () => {
    const ca = await createCertificateAuthority({ commonName: 'fallback test' })
    const trust = sandboxTrust(ca.cert, undefined)
    expect(trust.roots.count).toBe(rootCertificates.length)
    expect(pemCertificates(trust.files['bundle.pem']?.toString() ?? '')).toHaveLength(
      rootCertificates.length + 1,
    )
    // An image "bundle" with no certificate in it counts as none.
    expect(sandboxTrust(ca.cert, { path: '/etc/ssl/cert.pem', text: 'junk' }).roots.count).toBe(
      rootCertificates.length,
    )
  })
})

describe('trustEnvironment', () => {
  it('points every bundle variable at the merged bundle and JVMs at the trust store', () => {
    const env = trustEnvironment()
    for (const name of BUNDLE_VARIABLES) expect(env[name]).toBe(`${SANDBOX_TRUST_DIR}/bundle.pem`)
    expect(env.JAVA_TOOL_OPTIONS).toBe(
      `-Djavax.net.ssl.trustStore=${SANDBOX_TRUST_DIR}/truststore.jks -Djavax.net.ssl.trustStoreType=JKS -Djavax.net.ssl.trustStorePassword=changeit`,
    )
    expect(trustEnvironment('-Xmx1g').JAVA_TOOL_OPTIONS).toMatch(/changeit -Xmx1g$/)
  })
})
