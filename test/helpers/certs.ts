// A throwaway certificate authority and one leaf certificate for the test names,
// made with the openssl CLI in a temp dir. Generated once per test process (each
// vitest worker) and removed when the process exits. Never trusted by anything
// but the clients a test points at it (--cacert, verify=, ca:).

import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Every name the leaf certificate covers. */
export const CERT_NAMES = [
  'allowed.test',
  '*.allowed.test',
  'a.test',
  'b.test',
  'evil.test',
  'ssh.test',
  'api.anthropic.com',
  'pypi.org',
  'localhost',
] as const

export interface TestCerts {
  readonly dir: string
  /** PEM file of the CA, for `curl --cacert` and Python `verify=`. */
  readonly caFile: string
  readonly ca: Buffer
  readonly cert: Buffer
  readonly key: Buffer
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 20_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args[0]} failed: ${stderr || err.message}`))
      else resolve()
    })
  })
}

/**
 * A CA and a leaf for `names` (plus 127.0.0.1) in a new temp dir, removed when
 * the process exits. The end-to-end set-up uses it too, for its stand-in index.
 */
export async function makeCertificates(names: readonly string[]): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'isorun-test-certs-'))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  await openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=isorun test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-addext',
      'subjectKeyIdentifier=hash',
    ],
    dir,
  )
  await openssl(
    ['req', '-new', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', `/CN=${names[0]}`],
    dir,
  )
  const san = [...names.map((n) => `DNS:${n}`), 'IP:127.0.0.1'].join(',')
  writeFileSync(
    join(dir, 'leaf.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      `subjectAltName=${san}`,
      '',
    ].join('\n'),
  )
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'leaf.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'leaf.ext',
      '-out',
      'leaf.pem',
    ],
    dir,
  )
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem')),
    cert: readFileSync(join(dir, 'leaf.pem')),
    key: readFileSync(join(dir, 'leaf.key')),
  }
}

let cached: Promise<TestCerts> | undefined

/** The test CA and leaf, generated on first use in this process. */
export function testCerts(): Promise<TestCerts> {
  cached ??= makeCertificates(CERT_NAMES)
  return cached
}
