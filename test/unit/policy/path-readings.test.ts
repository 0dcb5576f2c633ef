// The one table of ways an origin server may read a request path (or method)
// other than the endpoint rules did, one row per reading. The host allows
// `GET /allowed/**` and denies `/allowed/private/**` (listed first); every
// reading that could make an allowed-looking request reach the denied subtree,
// or a path outside /allowed, must come out refused. What is forwarded is the
// target without its fragment, and for an allowed row that is exactly what was
// decided.

import { describe, expect, it } from 'vitest'
import { compilePolicy, decide, type DenyReason, type Reason } from '../../../src/policy/index.js'
import { withoutFragment } from '../../../src/policy/endpoint.js'

const policy = compilePolicy({
  name: 'paths',
  mode: 'allow-list',
  allow: [{ rule: 'api.example.com', from: 'paths' }],
  deny: [],
  endpoints: [
    {
      host: 'api.example.com',
      from: 'paths',
      rules: [
        { methods: [], path: '/allowed/private/**', action: 'deny' },
        { methods: ['GET'], path: '/allowed/**', action: 'allow' },
      ],
    },
  ],
})

interface Reading {
  /** How an origin may read it. */
  readonly what: string
  /** The request target as sent (path, query, fragment). */
  readonly target: string
  readonly verdict: Reason
  readonly method?: string
  /** Override headers the request carries (lowercase names). */
  readonly overrides?: readonly string[]
}

const ALLOWED: Reason = 'endpoint-allowed'
const DENIED: DenyReason = 'endpoint-denied'
const AMBIGUOUS: DenyReason = 'bad-path'
const OVERRIDE: DenyReason = 'method-override'

const READINGS: readonly Reading[] = [
  // Readings every server shares.
  { what: 'a plain allowed path', target: '/allowed/x', verdict: ALLOWED },
  { what: 'the denied subtree', target: '/allowed/private/x', verdict: DENIED },
  { what: 'the denied directory itself', target: '/allowed/private', verdict: DENIED },
  { what: 'the denied directory with a slash', target: '/allowed/private/', verdict: DENIED },
  { what: 'a path outside every rule', target: '/secret', verdict: 'no-endpoint-match' },
  {
    what: 'a method no rule allows',
    target: '/allowed/x',
    method: 'POST',
    verdict: 'no-endpoint-match',
  },
  {
    what: 'a query, which routing ignores',
    target: '/allowed/x?next=/allowed/private/x',
    verdict: ALLOWED,
  },
  // Case-insensitive routing (IIS, many frameworks).
  { what: 'another case of a denied segment', target: '/allowed/PRIVATE/x', verdict: DENIED },
  // A fragment: cut off for the decision, and never forwarded.
  {
    what: 'a fragment that hides ".." from the decision',
    target: '/allowed/x#/../../private/x',
    verdict: ALLOWED,
  },
  { what: 'a fragment right after the prefix', target: '/allowed#/private/x', verdict: ALLOWED },
  // Dot segments, in every spelling a server decodes or normalises.
  { what: 'a ".." segment', target: '/allowed/../secret', verdict: AMBIGUOUS },
  { what: 'a "." segment', target: '/allowed/./private/x', verdict: AMBIGUOUS },
  { what: 'percent-encoded dots', target: '/allowed/%2e%2e/secret', verdict: AMBIGUOUS },
  { what: 'one dot encoded', target: '/allowed/.%2e/secret', verdict: AMBIGUOUS },
  {
    what: 'double percent-encoding (%252e is "." after two decodings)',
    target: '/allowed/%252e%252e/secret',
    verdict: AMBIGUOUS,
  },
  { what: 'double-encoded slash', target: '/allowed/private%252fx', verdict: AMBIGUOUS },
  {
    what: 'overlong UTF-8 for "." (2 bytes)',
    target: '/allowed/%c0%ae%c0%ae/secret',
    verdict: AMBIGUOUS,
  },
  {
    what: 'overlong UTF-8 for "." (3 bytes)',
    target: '/allowed/%e0%80%ae/secret',
    verdict: AMBIGUOUS,
  },
  { what: 'overlong UTF-8 for "/"', target: '/allowed%c0%afprivate/x', verdict: AMBIGUOUS },
  { what: 'a stray continuation byte', target: '/allowed/%ae', verdict: AMBIGUOUS },
  { what: 'an invalid byte', target: '/allowed/%ff', verdict: AMBIGUOUS },
  { what: 'IIS %u encoding', target: '/allowed/%u002e%u002e/secret', verdict: AMBIGUOUS },
  {
    what: 'fullwidth dots (NFKC ".")',
    target: '/allowed/%ef%bc%8e%ef%bc%8e/secret',
    verdict: AMBIGUOUS,
  },
  // Separators in other spellings.
  { what: 'an encoded slash', target: '/allowed%2fprivate/x', verdict: AMBIGUOUS },
  { what: 'a backslash (Windows servers)', target: '/allowed\\..\\secret', verdict: AMBIGUOUS },
  { what: 'an encoded backslash', target: '/allowed/%5c../secret', verdict: AMBIGUOUS },
  { what: 'an empty segment', target: '/allowed//private/x', verdict: AMBIGUOUS },
  {
    what: 'an encoded "?" (decoded before the query is split)',
    target: '/allowed/private%3f/x',
    verdict: AMBIGUOUS,
  },
  { what: 'an encoded "#"', target: '/allowed/private%23/x', verdict: AMBIGUOUS },
  // Segments that some servers trim or cut.
  { what: 'a trailing dot (Windows drops it)', target: '/allowed/private./x', verdict: AMBIGUOUS },
  { what: 'trailing dots', target: '/allowed/private../x', verdict: AMBIGUOUS },
  { what: 'a trailing encoded space', target: '/allowed/private%20/x', verdict: AMBIGUOUS },
  { what: 'a trailing encoded tab', target: '/allowed/private%09/x', verdict: AMBIGUOUS },
  { what: 'a trailing no-break space', target: '/allowed/private%c2%a0/x', verdict: AMBIGUOUS },
  {
    what: 'a path parameter (Tomcat, Jetty cut it)',
    target: '/allowed/private;x/y',
    verdict: AMBIGUOUS,
  },
  { what: 'a path parameter after ".."', target: '/allowed/..;/secret', verdict: AMBIGUOUS },
  { what: 'an NTFS data stream', target: '/allowed/private::$DATA/x', verdict: AMBIGUOUS },
  {
    what: 'an encoded NUL (C servers stop there)',
    target: '/allowed/x%00/../../secret',
    verdict: AMBIGUOUS,
  },
  // Letters in other spellings.
  { what: 'a percent-encoded letter', target: '/allowed/%70rivate/x', verdict: AMBIGUOUS },
  {
    what: 'a fullwidth letter (NFKC "p")',
    target: '/allowed/%ef%bd%90rivate/x',
    verdict: AMBIGUOUS,
  },
  {
    what: 'a dotless ı (Unicode upper case: I)',
    target: '/allowed/pr%c4%b1vate/x',
    verdict: AMBIGUOUS,
  },
  {
    what: 'a dotted İ (Unicode lower case: i and a dot)',
    target: '/allowed/PR%c4%b0VATE/x',
    verdict: AMBIGUOUS,
  },
  { what: 'a long ſ (NFKC and upper case: s)', target: '/allowed/%c5%bfecret', verdict: AMBIGUOUS },
  { what: 'a raw 8-bit byte', target: '/allowed/priv\u00e9', verdict: AMBIGUOUS },
  { what: 'a request target that is not a path', target: '*', verdict: AMBIGUOUS },
  // Readings that are one and the same everywhere stay allowed.
  {
    what: 'encoded non-ASCII that normalisation keeps',
    target: '/allowed/caf%c3%a9',
    verdict: ALLOWED,
  },
  { what: 'an encoded space inside a segment', target: '/allowed/my%20file', verdict: ALLOWED },
  { what: 'a dot inside a segment', target: '/allowed/v1.2/x', verdict: ALLOWED },
  // The method read from elsewhere than the request line.
  {
    what: 'X-HTTP-Method-Override',
    target: '/allowed/x',
    overrides: ['x-http-method-override'],
    verdict: OVERRIDE,
  },
  {
    what: 'X-HTTP-Method (ASP.NET)',
    target: '/allowed/x',
    overrides: ['x-http-method'],
    verdict: OVERRIDE,
  },
  {
    what: 'X-Method-Override',
    target: '/allowed/x',
    overrides: ['x-method-override'],
    verdict: OVERRIDE,
  },
  {
    what: 'X-Original-URL (Symfony, IIS rewrites)',
    target: '/allowed/x',
    overrides: ['x-original-url'],
    verdict: OVERRIDE,
  },
  { what: 'X-Rewrite-URL', target: '/allowed/x', overrides: ['x-rewrite-url'], verdict: OVERRIDE },
  {
    what: 'a _method query parameter (Rails, Laravel)',
    target: '/allowed/x?_method=DELETE',
    verdict: OVERRIDE,
  },
  {
    what: 'an encoded _method parameter',
    target: '/allowed/x?a=1&%5Fmethod=DELETE',
    verdict: OVERRIDE,
  },
  {
    what: 'a _METHOD parameter in another case',
    target: '/allowed/x?_METHOD=delete',
    verdict: OVERRIDE,
  },
  {
    what: 'a .method parameter (PHP reads "." as "_")',
    target: '/allowed/x?.method=DELETE',
    verdict: OVERRIDE,
  },
  {
    what: 'a _+method parameter ("__method" to PHP, not _method)',
    target: '/allowed/x?_+method=DELETE',
    verdict: ALLOWED,
  },
  {
    what: 'a .method parameter after a space PHP drops',
    target: '/allowed/x?%20.method=DELETE',
    verdict: OVERRIDE,
  },
  { what: 'a _method[] parameter', target: '/allowed/x?_method[]=DELETE', verdict: OVERRIDE },
  {
    what: 'X_HTTP_Method_Override (CGI and PHP read "_" as "-")',
    target: '/allowed/x',
    overrides: ['x_http_method_override'],
    verdict: OVERRIDE,
  },
  {
    what: 'a parameter that only contains "_method"',
    target: '/allowed/x?my_method=1',
    verdict: ALLOWED,
  },
]

describe('path readings: one verdict per way an origin may read a request', () => {
  it.each(READINGS.map((r) => [r.what, r] as const))('%s', (_what, reading) => {
    const decision = decide(
      {
        protocol: 'http',
        host: 'api.example.com',
        port: 80,
        method: reading.method ?? 'GET',
        path: withoutFragment(reading.target),
        hostHeader: 'api.example.com',
        ...(reading.overrides ? { overrides: reading.overrides } : {}),
      },
      policy,
    )
    expect(decision.reason).toBe(reading.verdict)
  })

  it('what is forwarded never carries a fragment', () => {
    for (const { target } of READINGS) expect(withoutFragment(target)).not.toContain('#')
    expect(withoutFragment('/allowed/x#/../../private/x')).toBe('/allowed/x')
    expect(withoutFragment('/allowed/x?q=1#frag')).toBe('/allowed/x?q=1')
  })

  it('hosts without endpoint rules are not held to these readings', () => {
    const plain = compilePolicy({
      name: 'plain',
      mode: 'allow-list',
      allow: [{ rule: 'api.example.com', from: 'plain' }],
      deny: [],
    })
    const request = {
      protocol: 'http' as const,
      host: 'api.example.com',
      port: 80,
      method: 'GET',
      path: '/allowed/%252e%252e/x?_method=DELETE',
      hostHeader: 'api.example.com',
      overrides: ['x-http-method-override'],
    }
    expect(decide(request, plain).action).toBe('allow')
  })
})
