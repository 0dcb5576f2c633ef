// What a sandbox trusts: its image's own CA bundle plus the sandbox's CA, as
// files for a read-only mount, and the environment variables that point every
// common TLS client at them. Many of those variables replace a client's trust
// store instead of adding to it (requests, pip, curl, npm, git), so they point
// at the merged bundle: the public roots keep working next to the CA.

import { rootCertificates } from 'node:tls'
import { javaTrustStore, TRUST_STORE_PASSWORD } from './jks.js'
import { pemCertificates, pemToDer } from './pem.js'

/**
 * Where images keep their system bundle, first match wins (the list Go's
 * crypto/x509 searches): Debian/Ubuntu/Alpine/Gentoo, Fedora/RHEL (two), openSUSE,
 * Alpine's and macOS's cert.pem.
 */
export const SYSTEM_BUNDLE_PATHS = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
] as const

/** Where the files are mounted in the sandbox (read-only). */
export const SANDBOX_TRUST_DIR = '/etc/isorun/ca'

export const TRUST_FILES = {
  bundle: 'bundle.pem',
  ca: 'ca.pem',
  javaTrustStore: 'truststore.jks',
} as const

export interface SandboxTrust {
  /** File name → content, for the directory mounted at SANDBOX_TRUST_DIR. */
  readonly files: Readonly<Record<string, Buffer>>
  /** Where the public roots came from: the image's bundle, or Node's copy of Mozilla's. */
  readonly roots: { readonly source: string; readonly count: number }
}

/**
 * The files for a sandbox: `bundle.pem` (the image's roots, or Node's built-in
 * Mozilla roots when the image has none, then the CA), `ca.pem` (the CA alone)
 * and `truststore.jks` (the same as bundle.pem, for Java).
 */
export function sandboxTrust(
  caCert: string,
  imageBundle: { readonly path: string; readonly text: string } | undefined,
): SandboxTrust {
  const imageRoots = imageBundle ? pemCertificates(imageBundle.text) : []
  const roots = imageRoots.length > 0 ? imageRoots : rootCertificates.map((c) => `${c}\n`)
  const source =
    imageRoots.length > 0 && imageBundle ? imageBundle.path : "Node's built-in Mozilla roots"
  const ca = pemCertificates(caCert)
  if (ca.length !== 1) throw new Error('the sandbox CA must be exactly one PEM certificate')
  const bundle = `${roots.join('')}# isorun: this sandbox's interception CA\n${ca.join('')}`
  const store = javaTrustStore([
    ...roots.map((pem, i) => ({ alias: `root-${i}`, der: pemToDer(pem) })),
    { alias: 'isorun-sandbox-ca', der: pemToDer(ca[0] as string) },
  ])
  return {
    files: {
      [TRUST_FILES.bundle]: Buffer.from(bundle),
      [TRUST_FILES.ca]: Buffer.from(ca.join('')),
      [TRUST_FILES.javaTrustStore]: store,
    },
    roots: { source, count: roots.length },
  }
}

/** Variables that each name a CA bundle file for one kind of client; all get the merged bundle. */
export const BUNDLE_VARIABLES = [
  'SSL_CERT_FILE', // OpenSSL (curl, wget, Ruby, PHP), Go, Python's ssl
  'NODE_EXTRA_CA_CERTS', // Node.js (added to its built-in roots)
  'REQUESTS_CA_BUNDLE', // Python requests (replaces certifi)
  'PIP_CERT', // pip
  'CURL_CA_BUNDLE', // curl, and requests as a fallback
  'GIT_SSL_CAINFO', // git over HTTPS
  'AWS_CA_BUNDLE', // AWS CLI and SDKs
  'CARGO_HTTP_CAINFO', // cargo
  'npm_config_cafile', // npm (replaces its roots)
] as const

/**
 * The environment entries for a sandbox. `JAVA_TOOL_OPTIONS` points every JVM
 * at the trust store; a value the sandbox's creator gave is kept after ours.
 */
export function trustEnvironment(userJavaToolOptions?: string): Record<string, string> {
  const bundle = `${SANDBOX_TRUST_DIR}/${TRUST_FILES.bundle}`
  const java = [
    `-Djavax.net.ssl.trustStore=${SANDBOX_TRUST_DIR}/${TRUST_FILES.javaTrustStore}`,
    '-Djavax.net.ssl.trustStoreType=JKS',
    `-Djavax.net.ssl.trustStorePassword=${TRUST_STORE_PASSWORD}`,
  ].join(' ')
  return {
    ...Object.fromEntries(BUNDLE_VARIABLES.map((name) => [name, bundle])),
    JAVA_TOOL_OPTIONS: userJavaToolOptions ? `${java} ${userJavaToolOptions}` : java,
  }
}
