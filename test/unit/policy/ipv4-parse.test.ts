// parseIPv4's one-pass path for the canonical dotted quad (what resolvers
// return) agrees with the general inet_aton parser it bypasses.

import { describe, expect, it } from 'vitest'
import { formatIP, parseIPv4 } from '../../../src/policy/index.js'

describe('parseIPv4', () => {
  it('canonical dotted quads: value and formatting round-trip', () => {
    let seed = 12345
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31)
    for (let i = 0; i < 2000; i++) {
      const parts = [next() % 256, next() % 256, next() % 256, next() % 256]
      const text = parts.join('.')
      const ip = parseIPv4(text)
      expect(ip?.value).toBe(((parts[0]! * 256 + parts[1]!) * 256 + parts[2]!) * 256 + parts[3]!)
      expect(formatIP(ip!)).toBe(text)
    }
  })

  it.each([
    ['0.0.0.0', 0],
    ['255.255.255.255', 0xffffffff],
    ['127.0.0.1', 0x7f000001],
    ['10.0.0.1', 0x0a000001],
  ])('%s', (text, value) => {
    expect(parseIPv4(text)?.value).toBe(value)
  })

  it.each([
    // Other inet_aton spellings still go through the general parser.
    ['010.0.0.1', 0x08000001],
    ['0x7f.0.0.1', 0x7f000001],
    ['127.1', 0x7f000001],
    ['2130706433', 0x7f000001],
    ['127.0.0.01', 0x7f000001],
  ])('%s (general path)', (text, value) => {
    expect(parseIPv4(text)?.value).toBe(value)
  })

  it.each([
    '256.0.0.1',
    '1.2.3.256',
    '1.2.3.4.5',
    '1..2.3',
    '1.2.3.',
    '.1.2.3',
    '1.2.3.4x',
    '1234.1.1.1',
    '',
  ])('%j is not an address', (text) => {
    expect(parseIPv4(text)).toBeUndefined()
  })
})
