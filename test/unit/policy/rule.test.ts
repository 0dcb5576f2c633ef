import { describe, expect, it } from 'vitest'
import { splitAuthority } from '../../../src/policy/authority.js'
import { parseListRule, parseRule, RuleError } from '../../../src/policy/rule.js'

describe('parseRule: accepted forms', () => {
  it.each([
    ['example.com', 'example.com', 'exact', 'default'],
    ['Example.COM.', 'example.com', 'exact', 'default'],
    ['example.com:443', 'example.com:443', 'exact', 'range'],
    ['example.com:*', 'example.com:*', 'exact', 'any'],
    ['example.com:8000-8100', 'example.com:8000-8100', 'exact', 'range'],
    ['*.example.com', '*.example.com', 'wildcard', 'default'],
    ['*.EXAMPLE.com:22', '*.example.com:22', 'wildcard', 'range'],
    ['*.bücher.de', '*.xn--bcher-kva.de', 'wildcard', 'default'],
    ['*.hf.co', '*.hf.co', 'wildcard', 'default'],
    ['*', '*', 'any', 'default'],
    ['*:*', '*:*', 'any', 'any'],
    ['10.1.2.3', '10.1.2.3', 'cidr', 'default'],
    ['0x0a.1.2.3:8080', '10.1.2.3:8080', 'cidr', 'range'], // rules are canonicalised like requests
    ['10.0.0.0/8', '10.0.0.0/8', 'cidr', 'default'],
    ['10.0.0.0/8:22', '10.0.0.0/8:22', 'cidr', 'range'],
    ['2001:db8::1', '2001:db8::1', 'cidr', 'default'],
    ['2001:db8::/32', '2001:db8::/32', 'cidr', 'default'],
    ['[2001:db8::1]:8443', '[2001:db8::1]:8443', 'cidr', 'range'],
    ['[::ffff:10.0.0.1]', '10.0.0.1', 'cidr', 'default'],
    // Found by the address-spellings fuzz target: blocks of IPv4 inside IPv6 were left IPv6,
    // so they matched no request (requests are unwrapped to IPv4).
    ['::ffff:10.0.0.0/104', '10.0.0.0/8', 'cidr', 'default'],
    ['[::ffff:10.0.0.1/128]:22', '10.0.0.1:22', 'cidr', 'range'],
    ['64:ff9b::a00:0/120', '10.0.0.0/24', 'cidr', 'default'],
    ['::a00:0/104', '10.0.0.0/8', 'cidr', 'default'],
    ['2002:a00::/24', '10.0.0.0/8', 'cidr', 'default'],
    ['2002:a00:1:abcd::/64', '10.0.0.1', 'cidr', 'default'],
    ['::ffff:0:0/96', '0.0.0.0/0', 'cidr', 'default'],
    ['::/96', '::/96', 'cidr', 'default'], // holds :: and ::1, which carry no IPv4 address
    ['2002::/15', '2002::/15', 'cidr', 'default'],
    ['  pypi.org  ', 'pypi.org', 'exact', 'default'],
  ])('%s -> %s', (text, canonical, hostKind, portKind) => {
    const rule = parseRule(text)
    expect(rule.canonical).toBe(canonical)
    expect(rule.host.kind).toBe(hostKind)
    expect(rule.ports.kind).toBe(portKind)
  })
})

describe('parseRule: refused at load time with a message that says what to write', () => {
  it.each([
    ['', /empty pattern/],
    ['   ', /empty pattern/],
    ['*.com', /public suffix.*\*\.example\.com/],
    ['*.co.uk', /public suffix/],
    ['*.internal', /public suffix/], // every single-label base
    ['*.io', /public suffix/],
    // Private-section suffixes: every tenant's site would match.
    ['*.github.io', /public suffix/],
    ['*.githubusercontent.com', /public suffix/],
    ['*.s3.amazonaws.com', /public suffix/],
    ['*.workers.dev', /public suffix/],
    ['*.*.example.com', /only one wildcard/],
    ['api-*.example.com', /whole first label/],
    ['*example.com', /whole first label/],
    ['ex*ample.com', /whole first label/],
    ['example.com:0', /port "0"/],
    ['example.com:65536', /port "65536"/],
    ['example.com:http', /port "http"/],
    ['example.com:', /port ""/],
    ['example.com:90-80', /port "90-80"/],
    ['https://example.com/path', /write "example.com"/],
    ['example.com/path', /path or whitespace/],
    ['exa mple.com', /path or whitespace/],
    ['10.0.0.1/8', /host bits set.*10\.0\.0\.0\/8/],
    ['10.0.0.0/33', /prefix length/],
    ['*.10.0.0.1', /IP address/],
    ['[2001:db8::1', /unclosed/],
    ['a..b', /empty label/],
    ['300.1.1.1', /IPv4/],
  ])('%j', (text, message) => {
    expect(() => parseRule(text)).toThrow(RuleError)
    expect(() => parseRule(text)).toThrow(message)
  })
})

describe('parseRule: raw TCP rules (tcp:)', () => {
  it.each([
    ['tcp:github.com:22', 'tcp:github.com:22', 'exact'],
    ['TCP:GitHub.com.:22', 'tcp:github.com:22', 'exact'],
    ['tcp:*.example.com:5432', 'tcp:*.example.com:5432', 'wildcard'],
    ['tcp:db.internal:5432-5439', 'tcp:db.internal:5432-5439', 'exact'],
    ['tcp:*:*', 'tcp:*:*', 'any'],
    ['tcp:10.0.0.0/8:5432', 'tcp:10.0.0.0/8:5432', 'cidr'],
    ['tcp:[2001:db8::1]:22', 'tcp:[2001:db8::1]:22', 'cidr'],
  ])('%s -> %s', (text, canonical, hostKind) => {
    const rule = parseRule(text)
    expect(rule).toMatchObject({ canonical, raw: true, host: { kind: hostKind } })
    expect(parseRule(canonical).canonical).toBe(canonical)
  })

  it('other rules are not raw, whatever port they name', () => {
    for (const text of ['github.com', 'github.com:22', '*:*', '[2001:db8::1]:22'])
      expect(parseRule(text).raw).toBe(false)
  })

  it.each([
    ['tcp:github.com', /names its port.*tcp:github\.com:22/],
    ['tcp:2001:db8::1', /names its port/],
    ['tcp:', /no host after "tcp:"/],
    ['tcp:22', /names its port/],
    ['tcp://github.com:22', /without "\/\/": tcp:github.com:22/],
    ['tcp:*.com:22', /public suffix/],
    ['tcp:github.com:0', /port "0"/],
    ['tcp:https://github.com:22', /not URLs/],
  ])('%j is refused', (text, message) => {
    expect(() => parseRule(text)).toThrow(RuleError)
    expect(() => parseRule(text)).toThrow(message)
  })

  it('a deny rule cannot be raw: it refuses every protocol already', () => {
    expect(parseListRule('allow', 'tcp:github.com:22').raw).toBe(true)
    expect(() => parseListRule('deny', 'tcp:github.com:22')).toThrow(/write "github\.com:22"/)
    expect(parseListRule('deny', 'github.com:22').raw).toBe(false)
  })
})

describe('splitAuthority', () => {
  it.each([
    ['example.com', { host: 'example.com', port: undefined }],
    ['example.com:8080', { host: 'example.com', port: 8080 }],
    ['[2001:db8::1]:443', { host: '2001:db8::1', port: 443 }],
    ['[::1]', { host: '::1', port: undefined }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
  ])('%s', (text, expected) => {
    expect(splitAuthority(text)).toEqual(expected)
  })

  it.each(['', 'a:b', 'host:65536', 'host:123456', 'user@host', 'a/b:80', '[::1', '::1', 'a b'])(
    'refuses %j',
    (text) => {
      expect(splitAuthority(text)).toBeUndefined()
    },
  )
})
