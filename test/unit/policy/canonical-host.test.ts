import { describe, expect, it } from 'vitest'
import { canonicalHost, HostError, hostText } from '../../../src/policy/host.js'

const canon = (raw: string) => hostText(canonicalHost(raw))

describe('canonicalHost: names', () => {
  it.each([
    ['github.com', 'github.com'],
    ['GITHUB.COM', 'github.com'],
    ['GitHub.Com.', 'github.com'],
    ['GITHUB.COM.', 'github.com'],
    ['api.github.com', 'api.github.com'],
    ['_dmarc.example.com', '_dmarc.example.com'],
    // IDNA: Unicode to punycode, case folded and mapped (UTS 46)
    ['bücher.de', 'xn--bcher-kva.de'],
    ['BÜCHER.DE', 'xn--bcher-kva.de'],
    ['xn--bcher-kva.de', 'xn--bcher-kva.de'],
    ['faß.de', 'xn--fa-hia.de'],
    ['ｇｉｔｈｕｂ.com', 'github.com'], // fullwidth letters map to ASCII
    ['gith\u00adub.com', 'github.com'], // soft hyphen is ignored by IDNA
    ['пример.рф', 'xn--e1afmkfd.xn--p1ai'],
    ['github.com\u3002', 'github.com'], // an ideographic full stop is the one trailing dot
    ['１.２\uff0e', '1.0.0.2'],
  ])('%s -> %s', (raw, expected) => {
    expect(canon(raw)).toBe(expected)
  })

  it.each([
    ['', 'empty'],
    ['.', 'empty'],
    ['a..b', 'empty label'],
    ['.example.com', 'empty label'],
    ['example.com..', 'empty label'],
    // Found by the host fuzz target: one "." removed before IDNA mapping and one after.
    ['example.com\u3002.', 'empty label'],
    ['2.53\uff0e.', 'empty label'],
    ['example.com\uff0e\u3002', 'empty label'],
    ['exa mple.com', 'characters'],
    ['example.com/evil', 'characters'],
    ['a/b', 'characters'], // an IDNA library alone would truncate this to "a"
    ['evil.com%2f.good.com', 'characters'],
    ['user@example.com', 'characters'],
    ['example.com:443', 'IPv6'], // ports are split off before canonicalisation
    ['xn--zz.com', 'internationalised'],
    ['a'.repeat(64) + '.com', 'label longer'],
    [('a'.repeat(60) + '.').repeat(5) + 'com', 'longer than 253'],
    ['foo.123', 'IPv4'], // ends in a number, so must be an address
    ['1.2.3.4.5', 'IPv4'],
    ['256.1.1.1', 'IPv4'],
    ['0x100000000', 'IPv4'],
    ['[::1', 'unclosed'],
    ['[fe80::1%eth0]', 'zone'],
    ['[::1::2]', 'IPv6'],
    ['\u0000example.com', 'characters'],
  ])('refuses %j (%s)', (raw, why) => {
    expect(() => canonicalHost(raw)).toThrow(HostError)
    expect(() => canonicalHost(raw)).toThrow(new RegExp(why))
  })
})

describe('canonicalHost: IPv4 in every inet_aton spelling', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'], // one 32-bit decimal number
    ['0x7f000001', '127.0.0.1'], // one hex number
    ['017700000001', '127.0.0.1'], // one octal number
    ['0177.0.0.1', '127.0.0.1'], // octal first part
    ['0x7f.0.0.1', '127.0.0.1'],
    ['0x7F.0X0.0.01', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'], // a.b: b is 24 bits
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'], // a.b.c: c is 16 bits
    ['10.0.258', '10.0.1.2'],
    ['169.254.43518', '169.254.169.254'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['0251.0376.0251.0376', '169.254.169.254'],
    ['2852039166', '169.254.169.254'],
    ['127.0.0.1.', '127.0.0.1'], // one trailing dot
    ['0', '0.0.0.0'],
    ['0x', '0.0.0.0'],
    ['１２７.０.０.１', '127.0.0.1'], // fullwidth digits map through IDNA to an address
  ])('%s -> %s', (raw, expected) => {
    const host = canonicalHost(raw)
    expect(host.kind).toBe('ip')
    expect(hostText(host)).toBe(expected)
  })
})

describe('canonicalHost: IPv6', () => {
  it.each([
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['2001:DB8::0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // RFC 5952: first longest zero run
    ['2606:4700:4700::1111', '2606:4700:4700::1111'],
    ['[fe80::1]', 'fe80::1'],
    // Embedded IPv4 is unwrapped to the IPv4 address it reaches
    ['[::ffff:7f00:1]', '127.0.0.1'], // IPv4-mapped, hex
    ['[::ffff:127.0.0.1]', '127.0.0.1'], // IPv4-mapped, dotted
    ['[::FFFF:a9fe:a9fe]', '169.254.169.254'],
    ['[2002:a9fe:a9fe::]', '169.254.169.254'], // 6to4
    ['[2002:7f00:1:1234::5]', '127.0.0.1'], // 6to4 with a subnet and host part
    ['[64:ff9b::10.0.0.1]', '10.0.0.1'], // NAT64 well-known prefix
    ['[64:ff9b::a00:1]', '10.0.0.1'],
    ['[::7f00:1]', '127.0.0.1'], // deprecated IPv4-compatible
    ['[::]', '::'],
  ])('%s -> %s', (raw, expected) => {
    const host = canonicalHost(raw)
    expect(host.kind).toBe('ip')
    expect(hostText(host)).toBe(expected)
  })

  it.each([
    '[1:2:3:4:5:6:7:8:9]',
    '[12345::]',
    '[::ffff:1.2.3]',
    '[::ffff:01.2.3.4]',
    '[:::]',
    '[g::1]',
    '[1:2:3:4:5:6:7::8]',
  ])('refuses %s', (raw) => {
    expect(() => canonicalHost(raw)).toThrow(HostError)
  })
})
