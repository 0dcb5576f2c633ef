// `isorun proxy`'s flags, read without starting anything: each flag, its
// default, and each usage error.

import { describe, expect, it } from 'vitest'
import { UsageError } from '../../../src/cli/errors.js'
import { parseProxyFlags, type ProxyFlags } from '../../../src/cli/proxy-flags.js'

function flags(argv: string[], env: NodeJS.ProcessEnv = {}): ProxyFlags {
  const parsed = parseProxyFlags(argv, env)
  if (parsed === 'help') throw new Error('unexpected help')
  return parsed
}

function usageError(argv: string[]): UsageError {
  try {
    parseProxyFlags(argv, {})
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError)
    return err as UsageError
  }
  throw new Error(`no usage error for ${argv.join(' ')}`)
}

describe('the policy flags', () => {
  it('--allow and --deny, repeatable and comma-separated, make a rules policy', () => {
    expect(
      flags(['--allow', 'a.test, b.test', '--allow', 'c.test', '--deny', 'x.test']).policy,
    ).toEqual({
      kind: 'rules',
      allow: ['a.test', 'b.test', 'c.test'],
      deny: ['x.test'],
    })
    expect(flags(['--deny', 'x.test']).policy).toEqual({
      kind: 'rules',
      allow: [],
      deny: ['x.test'],
    })
  })

  it('--profile and --wait-for-policy', () => {
    expect(flags(['--profile', 'pypi']).policy).toEqual({ kind: 'profile', name: 'pypi' })
    expect(flags(['--wait-for-policy']).policy).toEqual({ kind: 'wait' })
  })

  it.each([
    [[]],
    [['--allow', ',']],
    [['--profile', 'pypi', '--allow', 'a.test']],
    [['--wait-for-policy', '--deny', 'a.test']],
    [['--wait-for-policy', '--profile', 'pypi']],
  ])('exactly one policy source: %j is a usage error', (argv) => {
    const err = usageError(argv)
    expect(err.message).toBe(
      'give exactly one policy: --profile NAME, --allow/--deny rules, or --wait-for-policy',
    )
    expect(err.hint).toMatch(/^usage: isorun proxy/)
  })
})

describe('the listeners', () => {
  it('default to HTTP on 3128 and SOCKS on 1080 on loopback, also beside --admin', () => {
    const defaults = {
      http: { host: '127.0.0.1', port: 3128 },
      socks: { host: '127.0.0.1', port: 1080 },
    }
    expect(flags(['--wait-for-policy']).listen).toMatchObject(defaults)
    expect(flags(['--wait-for-policy', '--admin', '127.0.0.1:9090']).listen).toEqual({
      ...defaults,
      tls: undefined,
      plain: undefined,
      dns: undefined,
      admin: { host: '127.0.0.1', port: 9090 },
    })
  })

  it('any listener flag replaces the defaults; IPv6 and the egress host are kept as written', () => {
    expect(
      flags([
        '--wait-for-policy',
        '--dns',
        '[::1]:5353',
        '--tls',
        '10.0.0.2:443',
        '--admin',
        'egress:9090',
      ]).listen,
    ).toEqual({
      http: undefined,
      socks: undefined,
      plain: undefined,
      tls: { host: '10.0.0.2', port: 443 },
      dns: { host: '::1', port: 5353 },
      admin: { host: 'egress', port: 9090 },
    })
  })

  it.each(['3128', '127.0.0.1', '127.0.0.1:', 'a.test:99999'])(
    '--http %s is a usage error',
    (value) => {
      expect(usageError(['--wait-for-policy', '--http', value]).message).toBe(
        `--http "${value}": write host:port, e.g. 127.0.0.1:3128`,
      )
    },
  )
})

describe('the other options', () => {
  it('operator ranges, logging, sandbox id, DNS answer and profile directories', () => {
    const f = flags([
      '--wait-for-policy',
      '--allow-private',
      'loopback,10.9.0.0/16',
      '--block',
      '172.30.0.0/16',
      '--block',
      '10.231.0.0/16',
      '--no-log-allowed',
      '--sandbox-id',
      'abc',
      '--dns-answer',
      '10.0.0.2',
      '--profiles-dir',
      '/etc/isorun/profiles',
    ])
    expect(f.operator).toEqual({
      allowSpecial: ['loopback', '10.9.0.0/16'],
      blockAlways: ['172.30.0.0/16', '10.231.0.0/16'],
    })
    expect(f.logAllowed).toBe(false)
    expect(f.sandboxId).toBe('abc')
    expect(f.dnsAnswerAddress).toBe('10.0.0.2')
    expect(f.profileDirs).toEqual(['/etc/isorun/profiles'])
  })

  it('logs allowed decisions unless told not to', () => {
    expect(flags(['--wait-for-policy']).logAllowed).toBe(true)
    expect(flags(['--wait-for-policy', '--log-allowed']).logAllowed).toBe(true)
    expect(flags(['--wait-for-policy']).sandboxId).toBeUndefined()
  })

  it('--resolve collects the addresses of each name', () => {
    const f = flags([
      '--wait-for-policy',
      '--resolve',
      'a.test=127.0.0.2',
      '--resolve',
      'a.test=127.0.0.3',
      '--resolve',
      'b.test=::1',
    ])
    expect([...f.resolveOverrides]).toEqual([
      ['a.test', ['127.0.0.2', '127.0.0.3']],
      ['b.test', ['::1']],
    ])
    expect(usageError(['--wait-for-policy', '--resolve', 'a.test']).message).toMatch(/a\.test/)
  })

  it('--upstream-proxy takes an http:// URL only', () => {
    expect(
      flags(['--wait-for-policy', '--upstream-proxy', 'http://proxy.corp:3128']).parentProxy?.href,
    ).toBe('http://proxy.corp:3128/')
    expect(usageError(['--wait-for-policy', '--upstream-proxy', 'proxy.corp']).message).toBe(
      '--upstream-proxy "proxy.corp" is not a URL such as http://proxy.corp:3128',
    )
    expect(
      usageError(['--wait-for-policy', '--upstream-proxy', 'https://proxy.corp']).message,
    ).toBe('--upstream-proxy must be an http:// proxy URL')
  })

  it('the DNS cache: TTL floor and ceiling, and the servers the proxy asks', () => {
    expect(flags(['--wait-for-policy']).dns).toEqual({ minTtlSeconds: 5, maxTtlSeconds: 300 })
    expect(
      flags([
        '--wait-for-policy',
        '--dns-ttl-min',
        '0',
        '--dns-ttl-max',
        '60',
        '--upstream-dns',
        '10.0.0.2',
        '--upstream-dns',
        '[fd00::53]:5353',
      ]).dns,
    ).toEqual({ minTtlSeconds: 0, maxTtlSeconds: 60, servers: ['10.0.0.2', '[fd00::53]:5353'] })
    expect(usageError(['--wait-for-policy', '--dns-ttl-min', 'soon']).message).toBe(
      '--dns-ttl-min "soon": write whole seconds from 0 to 86400',
    )
    expect(usageError(['--wait-for-policy', '--dns-ttl-max', '86401']).message).toMatch(/86400/)
    expect(
      usageError(['--wait-for-policy', '--dns-ttl-min', '60', '--dns-ttl-max', '10']).message,
    ).toBe('--dns-ttl-min (60) is above --dns-ttl-max (10)')
    expect(usageError(['--wait-for-policy', '--upstream-dns', 'dns.example']).message).toBe(
      '--upstream-dns "dns.example": write an IP address, with :port if not 53',
    )
  })

  it('the admin token comes from --admin-token, else ISORUN_ADMIN_TOKEN', () => {
    const env = { ISORUN_ADMIN_TOKEN: 'from-env' }
    expect(flags(['--wait-for-policy'], env).adminToken).toBe('from-env')
    expect(flags(['--wait-for-policy', '--admin-token', 'from-flag'], env).adminToken).toBe(
      'from-flag',
    )
    expect(flags(['--wait-for-policy']).adminToken).toBeUndefined()
  })

  it('passes the interception flags on as given', () => {
    const f = flags(['--wait-for-policy', '--ca-dir', '/ca', '--secrets', '/s.yaml'])
    expect(f.interception).toEqual({ 'ca-dir': '/ca', secrets: '/s.yaml' })
  })

  it('--help, unknown flags and stray arguments', () => {
    expect(parseProxyFlags(['--allow', 'a.test', '--help'], {})).toBe('help')
    expect(usageError(['--wait-for-policy', '--frobnicate']).message).toMatch(/frobnicate/)
    expect(usageError(['--wait-for-policy', 'extra']).message).toBe('unexpected argument "extra"')
  })
})
