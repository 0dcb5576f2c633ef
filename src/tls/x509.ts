// @peculiar/x509, loaded on first use: a proxy that never mints a certificate
// (most sidecars, until a host is intercepted) does not hold it in memory.
// It resolves its services through tsyringe, which needs the Reflect metadata
// polyfill loaded first.

export type X509 = typeof import('@peculiar/x509')

let loading: Promise<X509> | undefined

export function loadX509(): Promise<X509> {
  loading ??= (async () => {
    await import('reflect-metadata')
    const x509 = await import('@peculiar/x509')
    x509.cryptoProvider.set(globalThis.crypto)
    return x509
  })()
  return loading
}

/** ECDSA P-256 with SHA-256: what every leaf and every CA isorun makes uses. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
