// `isorun proxy` flags for TLS interception without the runner: the CA
// (--ca-cert/--ca-key, or --ca-dir made on first use), the secrets file and
// the upstream CAs. What the clients must be told is printed on stderr: where
// the CA certificate is, and each secret's placeholder.

import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { newPlaceholder, SecretError, type SecretBinding } from '../secrets/binding.js'
import { loadSecretsFile } from '../secrets/config.js'
import { ProfileError } from '../profiles/index.js'
import type { InterceptionSettings } from '../proxy/interception.js'
import { caFiles, ensureCaFiles } from '../tls/ca-files.js'
import type { CaMaterial } from '../tls/ca.js'
import { UsageError } from './errors.js'

export interface InterceptionFlags {
  readonly 'ca-cert'?: string
  readonly 'ca-key'?: string
  readonly 'ca-dir'?: string
  readonly secrets?: string
  readonly 'upstream-ca'?: string
}

export const INTERCEPTION_USAGE = `interception (TLS to hosts with endpoint rules, bound secrets or inspect: true):
  --ca-cert FILE --ca-key FILE   the CA that signs the leaf certificates clients are shown
  --ca-dir DIR             the CA in DIR/ca.pem and DIR/ca.key, made there (key mode 0600) if missing
  --secrets FILE           secrets file (format in the README); each placeholder is printed
  --upstream-ca FILE       PEM CAs upstream servers may present besides the system roots`

export const INTERCEPTION_OPTIONS = {
  'ca-cert': { type: 'string' },
  'ca-key': { type: 'string' },
  'ca-dir': { type: 'string' },
  secrets: { type: 'string' },
  'upstream-ca': { type: 'string' },
} as const

function readText(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(
      `--${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    )
  }
}

export async function interceptionFromFlags(
  flags: InterceptionFlags,
  say: (line: string) => void,
): Promise<InterceptionSettings> {
  const explicit = flags['ca-cert'] !== undefined || flags['ca-key'] !== undefined
  if (explicit && flags['ca-dir'] !== undefined)
    throw new UsageError('give --ca-cert and --ca-key, or --ca-dir, not both')
  if (explicit && (flags['ca-cert'] === undefined || flags['ca-key'] === undefined))
    throw new UsageError('--ca-cert and --ca-key go together')
  let ca: CaMaterial | undefined
  if (flags['ca-cert'] !== undefined && flags['ca-key'] !== undefined) {
    ca = { cert: readText('ca-cert', flags['ca-cert']), key: readText('ca-key', flags['ca-key']) }
  } else if (flags['ca-dir'] !== undefined) {
    const { material, created } = await ensureCaFiles(
      flags['ca-dir'],
      `isorun proxy on ${hostname()}`,
    )
    ca = material
    say(
      `interception CA ${created ? 'created' : 'loaded'}: trust ${caFiles(flags['ca-dir']).cert} in the clients`,
    )
  }
  let secrets: SecretBinding[] = []
  if (flags.secrets !== undefined) {
    let loaded
    try {
      loaded = loadSecretsFile(flags.secrets)
    } catch (err) {
      if (err instanceof SecretError || err instanceof ProfileError)
        throw new UsageError(err.message)
      throw err
    }
    secrets = loaded.map((s) => ({
      name: s.name,
      placeholder: s.placeholder ?? newPlaceholder(s.name),
      value: s.value,
      hosts: s.hosts,
      header: s.header,
      scheme: s.scheme,
    }))
    loaded.forEach((s, i) =>
      say(`secret ${s.name}: set ${s.env}=${secrets[i]?.placeholder ?? ''} in the clients`),
    )
    if (secrets.length > 0 && !ca)
      say(
        'secrets are put in only by interception, which needs a CA: add --ca-dir or --ca-cert/--ca-key',
      )
  }
  const upstreamCa =
    flags['upstream-ca'] !== undefined ? readText('upstream-ca', flags['upstream-ca']) : undefined
  return { ...(ca ? { ca } : {}), secrets, ...(upstreamCa !== undefined ? { upstreamCa } : {}) }
}
