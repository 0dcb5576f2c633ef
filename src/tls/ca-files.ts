// A CA kept on disk, egress side only: `ca.pem` (the certificate, safe to
// hand out) and `ca.key` (mode 0600, in a directory of mode 0700). The runner
// keeps one per sandbox in its state directory; `isorun proxy --ca-dir` keeps
// one for standalone use.

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createCertificateAuthority, type CaMaterial } from './ca.js'

export const CA_CERT_FILE = 'ca.pem'
export const CA_KEY_FILE = 'ca.key'

export function caFiles(dir: string): { cert: string; key: string } {
  return { cert: join(dir, CA_CERT_FILE), key: join(dir, CA_KEY_FILE) }
}

/** The CA in `dir`, or undefined when there is none. */
export function readCaFiles(dir: string): CaMaterial | undefined {
  const files = caFiles(dir)
  if (!existsSync(files.cert) || !existsSync(files.key)) return undefined
  return { cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8') }
}

export function writeCaFiles(dir: string, material: CaMaterial): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  chmodSync(dir, 0o700)
  const files = caFiles(dir)
  writeFileSync(files.key, material.key, { mode: 0o600 })
  chmodSync(files.key, 0o600)
  writeFileSync(files.cert, material.cert, { mode: 0o644 })
}

/** The CA in `dir`, made there first when there is none. */
export async function ensureCaFiles(
  dir: string,
  commonName: string,
): Promise<{ material: CaMaterial; created: boolean }> {
  const existing = readCaFiles(dir)
  if (existing) return { material: existing, created: false }
  const material = await createCertificateAuthority({ commonName })
  writeCaFiles(dir, material)
  return { material, created: true }
}
