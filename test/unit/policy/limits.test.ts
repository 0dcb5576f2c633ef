import { describe, expect, it } from 'vitest'
import {
  canonicalHost,
  compilePolicy,
  LimitError,
  parseDuration,
  parseLimitFields,
  parseSize,
  PolicyError,
} from '../../../src/policy/index.js'

describe('sizes and durations', () => {
  it.each([
    ['512', 512],
    [512, 512],
    ['10KB', 10_000],
    ['10kib', 10_240],
    ['1.5MB', 1_500_000],
    ['2 GiB', 2 * 1024 ** 3],
  ])('size %s is %d bytes', (text, bytes) => expect(parseSize(text)).toBe(bytes))

  it.each(['ten', '10XB', '-1', '', true])('size %s is refused', (text) =>
    expect(() => parseSize(text)).toThrow(LimitError),
  )

  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
  ])('duration %s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms))

  it.each(['0s', '1w', '10', 'soon'])('duration %s is refused', (text) =>
    expect(() => parseDuration(text)).toThrow(LimitError),
  )
})

describe('limits', () => {
  it('reads the fields; lifetime is the default window', () => {
    expect(parseLimitFields('api.test', { upload: '1MB', requests: 3, window: '1h' }, 'p')).toEqual(
      { pattern: 'api.test', upload: 1_000_000, requests: 3, windowMs: 3_600_000, from: 'p' },
    )
    expect(parseLimitFields('api.test', { download: 5, window: 'lifetime' }, 'p').windowMs).toBe(
      undefined,
    )
  })

  it.each([
    [{}, /sets no budget/],
    [{ upload: '1MB', uploads: 1 }, /unknown field "uploads"/],
    [{ requests: -1 }, /requests/],
    [{ upload: 'lots' }, /^upload:/],
  ])('refuses %j', (fields, message) =>
    expect(() => parseLimitFields('api.test', fields, 'p')).toThrow(message),
  )

  it('refuses a pattern that is not a rule, or a public suffix', () => {
    expect(() => parseLimitFields('*.com', { upload: 1 }, 'p')).toThrow(LimitError)
    expect(() => parseLimitFields('tcp:x.test:22', { upload: 1 }, 'p')).toThrow(/tcp/)
  })

  it('a policy finds the most specific limit for a destination', () => {
    const policy = compilePolicy({
      name: 'p',
      mode: 'allow-all',
      allow: [],
      deny: [],
      limits: [
        { pattern: '*.example.test', upload: 10, from: 'p' },
        { pattern: 'api.example.test', upload: 20, from: 'p' },
        { pattern: 'db.test:5432', requests: 1, from: 'p' },
      ],
    })
    expect(policy.limits.match(canonicalHost('api.example.test'), 443)?.upload).toBe(20)
    expect(policy.limits.match(canonicalHost('x.y.example.test'), 80)?.key).toBe('*.example.test')
    expect(policy.limits.match(canonicalHost('example.test'), 443)).toBeUndefined()
    expect(policy.limits.match(canonicalHost('db.test'), 5432)?.requests).toBe(1)
    expect(policy.limits.match(canonicalHost('db.test'), 443)).toBeUndefined()
  })

  it('two limits for one pattern are an error', () => {
    expect(() =>
      compilePolicy({
        name: 'p',
        mode: 'allow-all',
        allow: [],
        deny: [],
        limits: [
          { pattern: 'API.test', upload: 1, from: 'p' },
          { pattern: 'api.test', upload: 2, from: 'p' },
        ],
      }),
    ).toThrow(PolicyError)
  })
})
