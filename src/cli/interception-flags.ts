// `isorun proxy` flags for TLS interception without the runner: the CA
// (--ca-cert/--ca-key, or --ca-dir made on first use), the secrets file and
// the upstream CAs. What the clients must be told is printed on stderr: where
// the CA certificate is, and each secret's placeholder. The modules behind
// these flags (the YAML parser among them) are loaded only when one is given:
// a sidecar started by the runner, which gets all this through the admin API,
// never holds them.

import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import type { SecretBinding } from '../secrets/binding.js'
import type { InterceptionSettings } from '../proxy/interception.js'
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
  --secrets FILE           secrets file (format in secrets.d/README.md); each placeholder is printed
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

/** The settings the flags ask for, or undefined when none is given. */
export async function interceptionFromFlags(
  flags: InterceptionFlags,
  say: (line: string) => void,
): Promise<InterceptionSettings | undefined> {
  if (
    Object.keys(INTERCEPTION_OPTIONS).every(
      (k) => flags[k as keyof InterceptionFlags] === undefined,
    )
  )
    return undefined
  const explicit = flags['ca-cert'] !== undefined || flags['ca-key'] !== undefined
  if (explicit && flags['ca-dir'] !== undefined)
    throw new UsageError('give --ca-cert and --ca-key, or --ca-dir, not both')
  if (explicit && (flags['ca-cert'] === undefined || flags['ca-key'] === undefined))
    throw new UsageError('--ca-cert and --ca-key go together')
  let ca: CaMaterial | undefined
  if (flags['ca-cert'] !== undefined && flags['ca-key'] !== undefined) {
    ca = { cert: readText('ca-cert', flags['ca-cert']), key: readText('ca-key', flags['ca-key']) }
  } else if (flags['ca-dir'] !== undefined) {
    const { caFiles, ensureCaFiles } = await import('../tls/ca-files.js')
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
    const [{ loadSecretsFile }, { newPlaceholder, SecretError }, { ProfileError }] =
      await Promise.all([
        import('../secrets/config.js'),
        import('../secrets/binding.js'),
        import('../profiles/parse-profile.js'),
      ])
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
