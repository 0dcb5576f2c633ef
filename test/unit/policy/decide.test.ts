import { describe, expect, it } from 'vitest'
import {
  compilePolicy,
  decide,
  type EgressRequest,
  type Mode,
  type Policy,
} from '../../../src/policy/index.js'

function policy(
  allow: string[],
  deny: string[] = [],
  mode: Mode = 'allow-list',
  allowSpecial: string[] = [],
): Policy {
  return compilePolicy(
    {
      name: 'test',
      mode,
      allow: allow.map((rule) => ({ rule, from: 'test' })),
      deny: deny.map((rule) => ({ rule, from: 'test' })),
    },
    { allowSpecial },
  )
}

const connect = (host: string, port = 443, extra: Partial<EgressRequest> = {}): EgressRequest => ({
  protocol: 'connect',
  host,
  port,
  ...extra,
})

describe('decide: bypass shapes against an allow list', () => {
  const github = policy(['github.com', '*.github.com'])
  it.each([
    ['github.com', 'allow'],
    ['api.github.com', 'allow'],
    ['a.b.c.github.com', 'allow'],
    ['GITHUB.COM.', 'allow'],
    ['GitHub.com', 'allow'],
    ['evilgithub.com', 'deny'],
    ['github.com.evil.com', 'deny'],
    ['github.comevil.com', 'deny'],
    ['xgithub.com', 'deny'],
    ['github.co', 'deny'],
    ['ｇｉｔｈｕｂ.com', 'allow'], // fullwidth maps to the same name, which is allowed
    ['github.com..', 'deny'],
    ['.github.com', 'deny'],
    ['github.com%2eevil.com', 'deny'],
    ['github.com/evil.com', 'deny'],
  ])('%s -> %s', (host, action) => {
    expect(decide(connect(host), github).action).toBe(action)
  })

  it('*.github.com does not cover the apex github.com', () => {
    const wildcardOnly = policy(['*.github.com'])
    expect(decide(connect('api.github.com'), wildcardOnly).action).toBe('allow')
    const apex = decide(connect('github.com'), wildcardOnly)
    expect(apex).toMatchObject({ action: 'deny', reason: 'not-in-allow-list' })
  })

  it('a Unicode rule matches the punycode request and the other way round', () => {
    const unicodeRule = policy(['bücher.de'])
    expect(decide(connect('xn--bcher-kva.de'), unicodeRule).action).toBe('allow')
    expect(decide(connect('BÜCHER.de'), unicodeRule).action).toBe('allow')
    const punyRule = policy(['xn--bcher-kva.de'])
    expect(decide(connect('bücher.de'), punyRule).action).toBe('allow')
    expect(decide(connect('bucher.de'), punyRule).action).toBe('deny')
  })
})

describe('decide: IP literals in every spelling are one address', () => {
  const unrestricted = policy([], [], 'allow-all')
  it.each([
    '127.0.0.1',
    '2130706433',
    '0177.0.0.1',
    '0x7f.1',
    '0x7f000001',
    '127.1',
    '[::ffff:7f00:1]',
    '[::ffff:127.0.0.1]',
    '[2002:7f00:1::]',
    '[64:ff9b::7f00:1]',
  ])('%s is refused as loopback even in allow-all mode', (host) => {
    const d = decide(connect(host), unrestricted)
    expect(d).toMatchObject({ action: 'deny', reason: 'special-address', host: '127.0.0.1' })
    expect(d.detail).toContain('127.0.0.0/8')
  })

  it.each([
    '169.254.169.254',
    '2852039166',
    '0xa9fea9fe',
    '[2002:a9fe:a9fe::]',
    '[::ffff:a9fe:a9fe]',
    '169.254.43518',
  ])('%s is the link-local metadata address and is refused', (host) => {
    const d = decide(connect(host, 80), unrestricted)
    expect(d).toMatchObject({ action: 'deny', reason: 'special-address', host: '169.254.169.254' })
    expect(d.detail).toContain('169.254.0.0/16')
  })

  it('an IP deny rule catches every spelling of the address', () => {
    const p = policy([], ['93.184.216.34'], 'allow-all')
    for (const host of [
      '93.184.216.34',
      '1572395042',
      '0x5d.0xb8.0xd8.0x22',
      '[::ffff:5db8:d822]',
    ]) {
      expect(decide(connect(host), p)).toMatchObject({
        action: 'deny',
        reason: 'denied-by-rule',
        rule: '93.184.216.34',
      })
    }
  })

  it('CIDR allow rules match addresses inside the block only', () => {
    const p = policy(['93.184.0.0/16'])
    expect(decide(connect('93.184.216.34'), p).action).toBe('allow')
    expect(decide(connect('93.185.0.1'), p).action).toBe('deny')
  })
})

describe('decide: ports', () => {
  const p = policy([
    'example.com',
    'ssh.example.com:22',
    'range.example.com:8000-8100',
    'any.example.com:*',
  ])
  it.each([
    ['example.com', 443, 'allow'],
    ['example.com', 80, 'allow'],
    ['example.com', 8443, 'deny'],
    ['example.com', 22, 'deny'],
    ['ssh.example.com', 22, 'allow'],
    ['ssh.example.com', 443, 'deny'],
    ['range.example.com', 8050, 'allow'],
    ['range.example.com', 8101, 'deny'],
    ['any.example.com', 5432, 'allow'],
  ])('%s:%i -> %s', (host, port, action) => {
    expect(decide(connect(host, port), p).action).toBe(action)
  })

  it.each([0, -1, 65536, 1.5, NaN])('port %s is invalid', (port) => {
    expect(decide(connect('example.com', port), p)).toMatchObject({
      action: 'deny',
      reason: 'invalid-port',
    })
  })
})

describe('decide: modes and precedence', () => {
  it('deny rules beat allow rules, whichever is more specific', () => {
    const p = policy(['*.example.com', 'api.example.com'], ['*.example.com'])
    expect(decide(connect('api.example.com'), p)).toMatchObject({
      action: 'deny',
      reason: 'denied-by-rule',
      rule: '*.example.com',
    })
  })

  it('allow-all allows anything not denied', () => {
    const p = policy([], ['evil.com'], 'allow-all')
    expect(decide(connect('example.com'), p)).toMatchObject({
      action: 'allow',
      reason: 'allowed-by-mode',
      rule: 'mode:allow-all',
    })
    expect(decide(connect('evil.com'), p)).toMatchObject({
      action: 'deny',
      reason: 'denied-by-rule',
    })
  })

  it('deny-all denies everything', () => {
    const p = policy([], [], 'deny-all')
    expect(decide(connect('api.anthropic.com'), p)).toMatchObject({
      action: 'deny',
      reason: 'denied-by-mode',
    })
  })

  it('deny-all with allow rules is refused when compiled', () => {
    expect(() => policy(['example.com'], [], 'deny-all')).toThrow(/deny-all/)
  })

  it('the most specific allow rule is reported', () => {
    const p = policy(['*', '*.example.com', 'api.example.com'])
    expect(decide(connect('api.example.com'), p).rule).toBe('api.example.com')
    expect(decide(connect('www.example.com'), p).rule).toBe('*.example.com')
    expect(decide(connect('other.org'), p).rule).toBe('*')
  })
})

describe('decide: resolved addresses', () => {
  const p = policy(['pypi.org'])
  it('allows a public address and refuses special-purpose ones', () => {
    expect(decide(connect('pypi.org', 443, { resolved: ['151.101.0.223'] }), p).action).toBe(
      'allow',
    )
    for (const address of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '::1',
      'fd00::1',
      'fe80::1',
      '::ffff:10.0.0.1',
      '0.0.0.0',
      '224.0.0.1',
    ]) {
      expect(decide(connect('pypi.org', 443, { resolved: [address] }), p)).toMatchObject({
        action: 'deny',
        reason: 'special-address',
      })
    }
  })

  it('refuses when any of several addresses is special', () => {
    const d = decide(connect('pypi.org', 443, { resolved: ['151.101.0.223', '10.0.0.5'] }), p)
    expect(d).toMatchObject({ action: 'deny', reason: 'special-address' })
    expect(d.detail).toContain('10.0.0.5')
  })

  it('lets the operator allow a named group or a CIDR', () => {
    const withPrivate = policy(['mirror.internal.example'], [], 'allow-list', ['private'])
    expect(
      decide(connect('mirror.internal.example', 443, { resolved: ['10.1.2.3'] }), withPrivate)
        .action,
    ).toBe('allow')
    expect(
      decide(connect('mirror.internal.example', 443, { resolved: ['127.0.0.1'] }), withPrivate)
        .action,
    ).toBe('deny')
    const withCidr = policy(['mirror.internal.example'], [], 'allow-list', ['10.1.0.0/16'])
    expect(
      decide(connect('mirror.internal.example', 443, { resolved: ['10.1.2.3'] }), withCidr).action,
    ).toBe('allow')
    expect(
      decide(connect('mirror.internal.example', 443, { resolved: ['10.2.0.1'] }), withCidr).action,
    ).toBe('deny')
  })

  it('applies IP deny rules to resolved addresses', () => {
    const d = decide(
      connect('pypi.org', 443, { resolved: ['151.101.0.223'] }),
      policy(['pypi.org'], ['151.101.0.0/16']),
    )
    expect(d).toMatchObject({ action: 'deny', reason: 'denied-by-rule', rule: '151.101.0.0/16' })
  })

  it('refuses a resolver answer that is not an address', () => {
    expect(decide(connect('pypi.org', 443, { resolved: ['not-an-ip'] }), p).action).toBe('deny')
  })
})

describe('decide: TLS and HTTP consistency checks', () => {
  const p = policy(['api.example.com', '93.184.216.34'])
  const hello = (sni: string | null, ech = false) => ({ kind: 'client-hello' as const, sni, ech })

  it('SNI must equal the target name', () => {
    expect(
      decide(connect('api.example.com', 443, { tls: hello('api.example.com') }), p).action,
    ).toBe('allow')
    expect(
      decide(connect('api.example.com', 443, { tls: hello('API.EXAMPLE.COM.') }), p).action,
    ).toBe('allow')
    expect(decide(connect('api.example.com', 443, { tls: hello('evil.com') }), p)).toMatchObject({
      action: 'deny',
      reason: 'sni-mismatch',
    })
    expect(decide(connect('api.example.com', 443, { tls: hello(null) }), p)).toMatchObject({
      action: 'deny',
      reason: 'no-sni',
    })
    expect(
      decide(connect('api.example.com', 443, { tls: hello('api.example.com', true) }), p),
    ).toMatchObject({ action: 'deny', reason: 'ech-refused' })
    expect(
      decide(connect('api.example.com', 443, { tls: { kind: 'invalid', error: 'x' } }), p),
    ).toMatchObject({ action: 'deny', reason: 'bad-client-hello' })
  })

  it('an IP target may omit SNI, but a name in SNI must be allowed on its own', () => {
    expect(decide(connect('93.184.216.34', 443, { tls: hello(null) }), p).action).toBe('allow')
    expect(decide(connect('93.184.216.34', 443, { tls: hello('api.example.com') }), p).action).toBe(
      'allow',
    )
    expect(decide(connect('93.184.216.34', 443, { tls: hello('evil.com') }), p)).toMatchObject({
      action: 'deny',
      reason: 'sni-mismatch',
    })
  })

  it('a transparent TLS connection without SNI has no target', () => {
    expect(decide({ protocol: 'tls', host: '', port: 443, tls: hello(null) }, p)).toMatchObject({
      action: 'deny',
      reason: 'no-sni',
    })
  })

  it('the Host header must agree with the target', () => {
    const http = (hostHeader: string, port = 80): EgressRequest => ({
      protocol: 'http',
      host: 'api.example.com',
      port,
      method: 'GET',
      path: '/',
      hostHeader,
    })
    expect(decide(http('api.example.com'), p).action).toBe('allow')
    expect(decide(http('API.example.com:80'), p).action).toBe('allow')
    expect(decide(http('evil.com'), p)).toMatchObject({ action: 'deny', reason: 'host-mismatch' })
    expect(decide(http('api.example.com:8080'), p)).toMatchObject({
      action: 'deny',
      reason: 'host-mismatch',
    })
    expect(decide(http('api.example.com.evil.com'), p)).toMatchObject({
      action: 'deny',
      reason: 'host-mismatch',
    })
    expect(decide(http(''), p)).toMatchObject({ action: 'deny', reason: 'host-mismatch' })
  })

  it('bytes the proxy does not read need a tcp: rule; a port named without tcp: is not enough', () => {
    const q = policy(['example.com', 'tcp:github.com:22', 'git.example.com:2222'])
    expect(decide(connect('github.com', 22, { payload: 'server-first' }), q)).toMatchObject({
      action: 'allow',
      rule: 'tcp:github.com:22',
    })
    expect(decide(connect('github.com', 22, { payload: 'other' }), q).action).toBe('allow')
    for (const [host, port] of [
      ['example.com', 443],
      ['git.example.com', 2222],
    ] as const) {
      for (const payload of ['server-first', 'other'] as const) {
        expect(decide(connect(host, port, { payload }), q)).toMatchObject({
          action: 'deny',
          reason: 'unreadable-payload',
        })
      }
      expect(decide(connect(host, port), q).action).toBe('allow')
    }
    // A tcp: rule still checks TLS when the client speaks it.
    expect(
      decide(connect('github.com', 22, { payload: 'tls', tls: hello('evil.com') }), q).reason,
    ).toBe('sni-mismatch')
    expect(
      decide(connect('example.com', 443, { payload: 'tls', tls: hello('example.com') }), q).action,
    ).toBe('allow')
    // allow-all allows hosts, not raw TCP.
    expect(
      decide(connect('example.com', 443, { payload: 'other' }), policy([], [], 'allow-all')).reason,
    ).toBe('unreadable-payload')
    expect(
      decide(
        connect('example.com', 5432, { payload: 'other' }),
        policy(['tcp:*:5432'], [], 'allow-all'),
      ).action,
    ).toBe('allow')
  })

  it('HTTP/2 without TLS is refused with its own reason, even on a tcp: rule', () => {
    const q = policy(['tcp:example.com:8080'])
    expect(
      decide(connect('example.com', 8080, { payload: 'h2-prior-knowledge' }), q),
    ).toMatchObject({ action: 'deny', reason: 'h2c-prior-knowledge-unsupported' })
  })

  it('what names no target and cannot be read is refused as such, not as an invalid host', () => {
    const q = policy(['example.com'])
    for (const [payload, reason] of [
      ['other', 'unreadable-payload'],
      ['server-first', 'unreadable-payload'],
      ['h2-prior-knowledge', 'h2c-prior-knowledge-unsupported'],
    ] as const) {
      expect(decide({ protocol: 'tls', host: '', port: 443, payload }, q)).toMatchObject({
        action: 'deny',
        reason,
        host: '',
      })
    }
  })

  const plain: EgressRequest = {
    protocol: 'http',
    host: 'example.com',
    port: 80,
    method: 'GET',
    path: '/',
    hostHeader: 'example.com',
  }

  it('only WebSocket upgrades pass', () => {
    const q = policy(['example.com'])
    const upgrade = (value: string) => decide({ ...plain, upgrade: value }, q)
    expect(upgrade('websocket').action).toBe('allow')
    expect(upgrade(' WebSocket ').action).toBe('allow')
    for (const value of ['h2c', 'websocket, h2c', 'h2c, websocket', 'TLS/1.2', '', 'websocket2']) {
      expect(upgrade(value)).toMatchObject({ action: 'deny', reason: 'upgrade-refused' })
    }
  })

  it('an absolute URI must name the target as the Host does', () => {
    const q = policy(['example.com', 'example.com:8080'])
    const withAuthority = (targetAuthority: string, port = 80) =>
      decide({ ...plain, port, targetAuthority }, q)
    expect(withAuthority('example.com').action).toBe('allow')
    expect(withAuthority('EXAMPLE.com:80').action).toBe('allow')
    expect(withAuthority('example.com:8080', 8080).action).toBe('allow')
    for (const authority of ['evil.com', 'example.com:8080', 'example.com.evil.com', '']) {
      expect(withAuthority(authority)).toMatchObject({ action: 'deny', reason: 'host-mismatch' })
    }
  })
})

describe('decide: DNS questions', () => {
  it('answers a name allowed on 443 or 80, whatever its port rules say', () => {
    const p = policy(
      ['pypi.org', 'plain.example.com:80', 'ssh.example.com:22'],
      ['blocked.pypi.org'],
    )
    const dns = (host: string) => decide({ protocol: 'dns', host, port: 0 }, p).action
    expect(dns('pypi.org')).toBe('allow')
    expect(dns('PYPI.ORG.')).toBe('allow')
    expect(dns('plain.example.com')).toBe('allow')
    expect(dns('ssh.example.com')).toBe('deny') // not reachable through the transparent listeners
    expect(dns('example.com')).toBe('deny')
    expect(dns('blocked.pypi.org')).toBe('deny')
  })
})

describe('decide: endpoint rules', () => {
  const p = compilePolicy({
    name: 'test',
    mode: 'allow-list',
    allow: [{ rule: 'api.example.com', from: 'test' }],
    deny: [],
    endpoints: [
      {
        host: 'api.example.com',
        from: 'test',
        rules: [
          { methods: ['GET', 'HEAD'], path: '/v1/public/**', action: 'allow' },
          { methods: [], path: '/v1/admin/**', action: 'deny' },
          { methods: ['POST'], path: '/v1/messages', action: 'allow' },
        ],
      },
    ],
  })
  const http = (method: string, path: string): EgressRequest => ({
    protocol: 'http',
    host: 'api.example.com',
    port: 80,
    method,
    path,
  })

  it.each([
    ['GET', '/v1/public/a/b', 'allow', 'endpoint-allowed'],
    ['GET', '/v1/public/a?x=/v1/admin', 'allow', 'endpoint-allowed'],
    ['POST', '/v1/public/a', 'deny', 'no-endpoint-match'],
    ['GET', '/v1/admin/users', 'deny', 'endpoint-denied'],
    ['POST', '/v1/messages', 'allow', 'endpoint-allowed'],
    ['GET', '/v1/messages', 'deny', 'no-endpoint-match'],
    ['GET', '/v1/public/../admin/users', 'deny', 'bad-path'],
    ['GET', '/v1/public/%2e%2e/admin', 'deny', 'bad-path'],
    ['GET', '/v1/public/%2E%2E/admin', 'deny', 'bad-path'],
    ['GET', '//v1/admin/users', 'deny', 'bad-path'],
    ['GET', '/v1/public/a%2fb', 'deny', 'bad-path'],
    ['GET', '/v1/public/./x', 'deny', 'bad-path'],
  ])('%s %s -> %s (%s)', (method, path, action, reason) => {
    expect(decide(http(method, path), p)).toMatchObject({ action, reason })
  })

  it('without a method and path (an opaque tunnel) the host decision stands', () => {
    expect(decide(connect('api.example.com'), p).action).toBe('allow')
  })
})

describe('decide: invalid hosts never throw', () => {
  const p = policy(['*'], [], 'allow-list')
  it.each(['', '.', 'a..b', '[::1', 'a b', '\u0000', '999.999.999.999', 'x'.repeat(2000)])(
    '%j',
    (host) => {
      const d = decide(connect(host), p)
      expect(d.action).toBe('deny')
      expect(d.reason).toBe('invalid-host')
    },
  )
})

describe('decide: findings of the security review', () => {
  it('deny CIDR rules hold against IPv4 inside IPv6 answers (mapped, NAT64, 6to4)', () => {
    const p = policy([], ['93.184.216.0/24'], 'allow-all')
    for (const address of ['::ffff:93.184.216.34', '64:ff9b::5db8:d822', '2002:5db8:d822::1']) {
      expect(decide(connect('example.com', 443, { resolved: [address] }), p)).toMatchObject({
        action: 'deny',
        reason: 'denied-by-rule',
        rule: '93.184.216.0/24',
      })
    }
  })

  it('an operator-allowed range covers its addresses in IPv6-mapped form too', () => {
    const p = policy(['mirror.internal.example'], [], 'allow-list', ['10.1.0.0/16'])
    expect(
      decide(connect('mirror.internal.example', 443, { resolved: ['::ffff:10.1.2.3'] }), p).action,
    ).toBe('allow')
  })

  it('traffic that is not readable HTTP is refused for a host with endpoint rules, even on a tcp: rule', () => {
    const p = compilePolicy({
      name: 'test',
      mode: 'allow-list',
      allow: [{ rule: 'tcp:api.example.com:8080', from: 'test' }],
      deny: [],
      endpoints: [
        {
          host: 'api.example.com',
          from: 'test',
          rules: [{ methods: [], path: '/admin/**', action: 'deny' }],
        },
      ],
    })
    for (const payload of ['other', 'server-first'] as const) {
      expect(decide(connect('api.example.com', 8080, { payload }), p)).toMatchObject({
        action: 'deny',
        reason: 'unreadable-payload',
      })
    }
  })
})

describe('decide: endpoint paths that servers read differently', () => {
  const p = compilePolicy({
    name: 'test',
    mode: 'allow-list',
    allow: [{ rule: 'api.example.com', from: 'test' }],
    deny: [],
    endpoints: [
      {
        host: 'api.example.com',
        from: 'test',
        rules: [
          { methods: [], path: '/admin/**', action: 'deny' },
          { methods: ['GET'], path: '/**', action: 'allow' },
        ],
      },
    ],
  })
  const get = (path: string) =>
    decide({ protocol: 'http', host: 'api.example.com', port: 80, method: 'GET', path }, p)
  it.each([
    ['/%61dmin/x', 'bad-path'],
    ['/%41DMIN/x', 'bad-path'],
    ['/admin;x/y', 'bad-path'],
    ['/a%zz', 'bad-path'],
    ['/ADMIN/x', 'endpoint-denied'],
    ['/admin', 'endpoint-denied'],
    ['/Admin', 'endpoint-denied'],
    ['/admin/', 'endpoint-denied'],
    ['/public/%20x', 'endpoint-allowed'],
    ['/public/x', 'endpoint-allowed'],
  ])('GET %s -> %s', (path, reason) => {
    expect(get(path).reason).toBe(reason)
  })
})

describe("decide: isorun's own networks stay closed", () => {
  const operator = (allowSpecial: string[]) =>
    compilePolicy(
      { name: 'test', mode: 'allow-all', allow: [], deny: [] },
      { allowSpecial, blockAlways: ['172.26.0.0/16', '172.29.0.0/16'] },
    )
  it('a broad allowance (private) does not open them', () => {
    const p = operator(['private'])
    expect(decide(connect('10.1.2.3'), p).action).toBe('allow')
    expect(decide(connect('172.26.0.3', 8080), p)).toMatchObject({
      action: 'deny',
      reason: 'special-address',
    })
    expect(decide(connect('172.29.0.2', 9090), p).detail).toContain("isorun's own networks")
    expect(
      decide(connect('mirror.example', 443, { resolved: ['::ffff:172.26.0.9'] }), p).action,
    ).toBe('deny')
  })
  it("an operator's allowance narrower than the block opens just that", () => {
    const p = operator(['172.26.0.5/32'])
    expect(decide(connect('172.26.0.5'), p).action).toBe('allow')
    expect(decide(connect('172.26.0.6'), p).action).toBe('deny')
  })
})

describe('decide: IPv4 blocks written as IPv6 match every spelling', () => {
  // Found by the address-spellings fuzz target.
  it('a deny rule', () => {
    const p = compilePolicy({
      name: 'test',
      mode: 'allow-all',
      allow: [],
      deny: [{ rule: '::ffff:10.0.0.0/104', from: 'test' }],
    })
    for (const host of ['10.1.2.3', '[::ffff:10.1.2.3]', '012.1.2.3', '[2002:a01:203::]'])
      expect(decide(connect(host), p)).toMatchObject({ action: 'deny', reason: 'denied-by-rule' })
    expect(decide(connect('a.example', 443, { resolved: ['10.9.9.9'] }), p).action).toBe('deny')
  })
  it("the operator's blocked ranges", () => {
    const p = compilePolicy(
      { name: 'test', mode: 'allow-all', allow: [], deny: [] },
      { allowSpecial: ['private'], blockAlways: ['::ffff:172.26.0.0/112'] },
    )
    expect(decide(connect('172.26.0.3'), p)).toMatchObject({ reason: 'special-address' })
    expect(decide(connect('172.27.0.3'), p).action).toBe('allow')
  })
})
