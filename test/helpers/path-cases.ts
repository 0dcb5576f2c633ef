// The path and method readings the bypass tests send on every HTTP ingress
// (plain, and inside intercepted TLS): for a host that allows `GET /allowed/**`
// and denies `/allowed/private/**`, what the origin must receive, or that the
// request is refused and why. The readings themselves are tabled in
// test/unit/policy/path-readings.test.ts.

export interface PathCase {
  readonly name: string
  /** The request target; MARK is replaced by a marker unique to the case and ingress. */
  readonly path: string
  readonly headers?: string
  /** What the origin must receive, or null when the request must not reach it. */
  readonly forwarded: string | null
  /** The reason in the refusal, when refused. */
  readonly reason?: string
}

export const PATH_CASES: readonly PathCase[] = [
  { name: 'an allowed path (control)', path: '/allowed/x?m=MARK', forwarded: '/allowed/x?m=MARK' },
  {
    name: 'the denied subtree (control)',
    path: '/allowed/private/x?m=MARK',
    forwarded: null,
    reason: 'endpoint-denied',
  },
  {
    name: 'a fragment hiding ".." is cut off, never forwarded',
    path: '/allowed/x?m=MARK#/../../private/x',
    forwarded: '/allowed/x?m=MARK',
  },
  {
    name: 'a fragment in the path is cut off',
    path: '/allowed/MARK#/../private/x',
    forwarded: '/allowed/MARK',
  },
  {
    name: 'double percent-encoding',
    path: '/allowed/%252e%252e/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'overlong UTF-8 dots',
    path: '/allowed/%c0%ae%c0%ae/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'a trailing-dot segment',
    path: '/allowed/private./x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'a trailing encoded space',
    path: '/allowed/private%20/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'a trailing encoded tab',
    path: '/allowed/private%09/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'fullwidth dots',
    path: '/allowed/%ef%bc%8e%ef%bc%8e/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'encoded dots',
    path: '/allowed/%2e%2e/private/x?m=MARK',
    forwarded: null,
    reason: 'bad-path',
  },
  {
    name: 'another case of the denied segment',
    path: '/allowed/Private/x?m=MARK',
    forwarded: null,
    reason: 'endpoint-denied',
  },
  {
    name: 'X-HTTP-Method-Override on an allowed GET',
    path: '/allowed/x?m=MARK',
    headers: 'X-HTTP-Method-Override: DELETE\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-HTTP-Method',
    path: '/allowed/x?m=MARK',
    headers: 'X-HTTP-Method: DELETE\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-Method-Override in lower case',
    path: '/allowed/x?m=MARK',
    headers: 'x-method-override: PUT\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-Original-URL naming the denied subtree',
    path: '/allowed/x?m=MARK',
    headers: 'X-Original-URL: /allowed/private/x\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'X-Rewrite-URL',
    path: '/allowed/x?m=MARK',
    headers: 'X-Rewrite-URL: /allowed/private/x\r\n',
    forwarded: null,
    reason: 'method-override',
  },
  {
    name: 'a _method query parameter',
    path: '/allowed/x?m=MARK&_method=DELETE',
    forwarded: null,
    reason: 'method-override',
  },
]
