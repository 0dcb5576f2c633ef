// What the interception stage needs and the data path does not: the sandbox's
// CA (as a leaf minter), the secrets, and the extra CAs the upstream side
// trusts. Set through the admin API (PUT /interception, by the runner) or by
// `isorun proxy --ca-cert/--ca-key/--ca-dir/--secrets/--upstream-ca`. Nothing
// here is ever returned or logged with a key or a secret value in it.
//
// The stage will call, per TLS connection the policy allowed:
//   interceptionFor(policy, decision, ctx.interception.secrets)    whether to intercept
//   ctx.interception.minter?.leafFor(sni)                           the leaf to present
//     (no minter: intercepted hosts must be refused, never spliced)
//   ctx.interception.upstreamCa()                                   `ca` for the upstream tls.connect
// and per request inside: ctx.interception.secrets.substituteSecrets(host, headers).

import { createRequire } from 'node:module'
import { CertificateAuthorityError, loadCertificateAuthority, type CaMaterial } from '../tls/ca.js'
import { LeafMinter } from '../tls/leaf.js'
import { pemCertificates } from '../tls/pem.js'
import { parseSecretBindings, SecretError, type SecretBinding } from '../secrets/binding.js'
import { SecretStore } from '../secrets/store.js'
import { X509Certificate } from 'node:crypto'
import type { SecureContext } from 'node:tls'

export interface InterceptionSettings {
  readonly ca?: CaMaterial
  readonly secrets?: readonly SecretBinding[]
  /** PEM text of CAs the upstream side trusts besides the system roots. */
  readonly upstreamCa?: string
}

export class InterceptionSettingsError extends Error {}

export interface InterceptionSummary {
  readonly ca: {
    readonly subject: string
    readonly fingerprint: string
    readonly notAfter: string
    readonly cert: string
  } | null
  readonly secrets: ReturnType<SecretStore['describe']>
  readonly upstreamCa: { readonly certificates: number; readonly fingerprints: string[] } | null
  readonly leaves: number
}

export class InterceptionState {
  minter: LeafMinter | undefined
  secrets = new SecretStore()
  private extraUpstream: readonly string[] = []
  private upstreamList: readonly string[] | undefined
  private upstreamSecureContext: SecureContext | undefined

  constructor(settings: InterceptionSettings = {}) {
    this.replace(settings)
  }

  /** Replaces everything at once; on any error nothing changes. */
  replace(settings: InterceptionSettings): void {
    let minter: LeafMinter | undefined
    try {
      minter = settings.ca ? new LeafMinter(loadCertificateAuthority(settings.ca)) : undefined
    } catch (err) {
      if (err instanceof CertificateAuthorityError) throw new InterceptionSettingsError(err.message)
      throw err
    }
    const secrets = new SecretStore(settings.secrets ?? [])
    const extra = settings.upstreamCa !== undefined ? upstreamCertificates(settings.upstreamCa) : []
    this.minter = minter
    this.secrets = secrets
    this.extraUpstream = extra
    this.upstreamList = undefined
    this.upstreamSecureContext = undefined
  }

  /**
   * The `ca` option for upstream TLS connections: the system roots plus the
   * operator's extra CAs, or undefined (Node's defaults) when there are none.
   */
  upstreamCa(): readonly string[] | undefined {
    if (this.extraUpstream.length === 0) return undefined
    // node:tls only when asked: a sidecar that never intercepts never holds it.
    const tls = createRequire(import.meta.url)('node:tls') as typeof import('node:tls')
    this.upstreamList ??= [...tls.rootCertificates, ...this.extraUpstream]
    return this.upstreamList
  }

  /**
   * The same trust as one secure context, made once: a context built from the
   * ~150 roots for every upstream connection cost ~20 ms of CPU per connection.
   * Undefined (Node's default context) when there are no extra CAs.
   */
  upstreamContext(): SecureContext | undefined {
    const ca = this.upstreamCa()
    if (!ca) return undefined
    const tls = createRequire(import.meta.url)('node:tls') as typeof import('node:tls')
    this.upstreamSecureContext ??= tls.createSecureContext({ ca: [...ca] })
    return this.upstreamSecureContext
  }

  describe(): InterceptionSummary {
    const ca = this.minter?.ca
    return {
      ca: ca
        ? {
            subject: ca.certificate.subject.replace(/\n/g, ', '),
            fingerprint: ca.fingerprint,
            notAfter: ca.notAfter.toISOString(),
            cert: ca.cert,
          }
        : null,
      secrets: this.secrets.describe(),
      upstreamCa:
        this.extraUpstream.length > 0
          ? {
              certificates: this.extraUpstream.length,
              fingerprints: this.extraUpstream.map((c) => new X509Certificate(c).fingerprint256),
            }
          : null,
      leaves: this.minter?.size ?? 0,
    }
  }
}

function upstreamCertificates(text: string): string[] {
  const certs = pemCertificates(text)
  if (certs.length === 0)
    throw new InterceptionSettingsError('the upstream CA file holds no PEM certificate')
  for (const [i, pem] of certs.entries()) {
    try {
      new X509Certificate(pem)
    } catch {
      throw new InterceptionSettingsError(`upstream CA certificate ${i + 1} cannot be parsed`)
    }
  }
  return certs
}

/** The admin API's body: `{ ca?: { cert, key }, secrets?: [...], upstreamCa?: PEM }`. */
export function parseInterceptionSettings(body: unknown): InterceptionSettings {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new InterceptionSettingsError(
      'the body is { ca?: { cert, key }, secrets?: [...], upstreamCa?: "PEM" }',
    )
  const b = body as Record<string, unknown>
  const unknown = Object.keys(b).find((k) => !['ca', 'secrets', 'upstreamCa'].includes(k))
  if (unknown !== undefined)
    throw new InterceptionSettingsError(`${unknown} is not a field; use ca, secrets, upstreamCa`)
  let ca: CaMaterial | undefined
  if (b.ca !== undefined && b.ca !== null) {
    const c = b.ca as Record<string, unknown>
    if (typeof c !== 'object' || typeof c.cert !== 'string' || typeof c.key !== 'string')
      throw new InterceptionSettingsError('ca must be { cert, key } as PEM text')
    ca = { cert: c.cert, key: c.key }
  }
  let secrets: SecretBinding[] = []
  try {
    if (b.secrets !== undefined) secrets = parseSecretBindings(b.secrets)
  } catch (err) {
    if (err instanceof SecretError) throw new InterceptionSettingsError(err.message)
    throw err
  }
  if (b.upstreamCa !== undefined && b.upstreamCa !== null && typeof b.upstreamCa !== 'string')
    throw new InterceptionSettingsError('upstreamCa must be PEM text')
  return {
    ...(ca ? { ca } : {}),
    secrets,
    ...(typeof b.upstreamCa === 'string' ? { upstreamCa: b.upstreamCa } : {}),
  }
}
