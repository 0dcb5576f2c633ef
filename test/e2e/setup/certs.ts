// A throwaway CA and a server certificate for the stand-in upstreams' names,
// made with the openssl CLI.

import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from './sh.js'

export interface TestCertificates {
  readonly dir: string
  readonly caCert: string
  readonly serverCert: string
  readonly serverKey: string
}

export async function makeCertificates(names: readonly string[]): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), 'isorun-e2e-certs-'))
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.crt')
  const serverKey = join(dir, 'server.key')
  const serverCsr = join(dir, 'server.csr')
  const serverCert = join(dir, 'server.crt')
  const ext = join(dir, 'server.ext')
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-days',
    '2',
    '-subj',
    '/CN=isorun e2e test CA',
  ])
  await run('openssl', [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    serverKey,
    '-out',
    serverCsr,
    '-subj',
    `/CN=${names[0]}`,
  ])
  await writeFile(
    ext,
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth\n`,
  )
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    serverCsr,
    '-CA',
    caCert,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    serverCert,
    '-days',
    '2',
    '-extfile',
    ext,
  ])
  return { dir, caCert, serverCert, serverKey }
}
