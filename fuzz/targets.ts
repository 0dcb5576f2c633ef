// The fuzz targets: one module each under fuzz/targets/, exporting `fuzz`.

export interface FuzzTargetInfo {
  readonly name: string
  readonly description: string
  /** The target returns a promise (real sockets); the others run synchronously, which is faster. */
  readonly async: boolean
  /** Seconds of fuzzing in CI (`npm run fuzz:ci`). */
  readonly ciSeconds: number
  /** Longest one execution may take before the fuzzer reports a hang. */
  readonly timeoutMs: number
}

export const FUZZ_TARGETS: readonly FuzzTargetInfo[] = [
  {
    name: 'client-hello',
    description: 'TLS ClientHello parser (SNI, ALPN, ECH)',
    async: false,
    ciSeconds: 8,
    timeoutMs: 5000,
  },
  {
    name: 'connect-head',
    description: 'CONNECT head and authority read on the HTTP proxy port',
    async: false,
    ciSeconds: 8,
    timeoutMs: 5000,
  },
  {
    name: 'http-head',
    description: 'the one HTTP head reader (CONNECT heads, parent proxy and upgrade answers)',
    async: false,
    ciSeconds: 8,
    timeoutMs: 5000,
  },
  {
    name: 'socks5',
    description: 'SOCKS5 handshake reader on a loopback socket',
    async: true,
    ciSeconds: 10,
    timeoutMs: 30_000,
  },
  {
    name: 'dns',
    description: 'DNS server over UDP and TCP on loopback',
    async: true,
    ciSeconds: 10,
    timeoutMs: 30_000,
  },
  {
    name: 'host',
    description: 'host canonicalisation against itself and the WHATWG URL parser',
    async: false,
    ciSeconds: 8,
    timeoutMs: 5000,
  },
  {
    name: 'address-spellings',
    description: 'every spelling of an address decides the same',
    async: false,
    ciSeconds: 10,
    timeoutMs: 5000,
  },
  {
    name: 'rule',
    description: 'rule grammar: idempotent canonical form, same decisions',
    async: false,
    ciSeconds: 8,
    timeoutMs: 5000,
  },
  {
    name: 'profile',
    description: 'profile YAML loader, includes and compilation',
    async: false,
    ciSeconds: 8,
    timeoutMs: 5000,
  },
  {
    name: 'listeners',
    description: 'a real proxy: raw input to every listener, then good requests',
    async: true,
    ciSeconds: 20,
    timeoutMs: 120_000,
  },
]

export function findTarget(name: string): FuzzTargetInfo | undefined {
  return FUZZ_TARGETS.find((t) => t.name === name)
}
