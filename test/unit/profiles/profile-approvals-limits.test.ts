// `mode: report`, `onUnknown`, `approvalTimeoutMs` and `limits` in profile files
// and explicit network specs: read, merged through includes, and refused with
// file:line errors (or the field) when wrong.

import { describe, expect, it } from 'vitest'
import { parseProfile, ProfileError } from '../../../src/profiles/parse-profile.js'
import { resolveProfile, policySpecOf } from '../../../src/profiles/resolve.js'
import {
  networkPolicySpec,
  NetworkSpecError,
  ProfileCatalogue,
} from '../../../src/profiles/index.js'
import { compilePolicy } from '../../../src/policy/index.js'

function problem(text: string): ProfileError {
  try {
    parseProfile(text, '/p/x.yaml')
  } catch (err) {
    if (err instanceof ProfileError) return err
    throw err
  }
  throw new Error('expected a ProfileError')
}

describe('profile fields', () => {
  it('reads report mode, ask, the timeout and limits', () => {
    const def = parseProfile(
      [
        'name: x',
        'mode: allow-list',
        'onUnknown: ask',
        'approvalTimeoutMs: 5000',
        'allow: [a.test]',
        'limits:',
        '  a.test: { upload: 10MB, requests: 5, window: 1h }',
        '  "*.b.test": { download: 1GiB }',
        '',
      ].join('\n'),
      '/p/x.yaml',
    )
    expect(def).toMatchObject({ onUnknown: 'ask', approvalTimeoutMs: 5000 })
    expect(def.limits).toEqual([
      { pattern: 'a.test', upload: 10_000_000, requests: 5, windowMs: 3_600_000, from: 'x' },
      { pattern: '*.b.test', download: 1024 ** 3, from: 'x' },
    ])
    expect(parseProfile('name: x\nmode: report\nallow: [a.test]\n', '/p/x.yaml').mode).toBe(
      'report',
    )
  })

  it.each([
    ['name: x\nmode: allow-all\nonUnknown: ask\n', 3, 'onUnknown', /needs mode allow-list/],
    ['name: x\nonUnknown: maybe\n', 2, 'onUnknown', /deny or ask/],
    ['name: x\napprovalTimeoutMs: -5\n', 2, 'approvalTimeoutMs', /approvalTimeoutMs must be/],
    ['name: x\nlimits:\n  a.test: { upload: lots }\n', 3, 'limits.a.test', /upload: "lots"/],
    ['name: x\nlimits:\n  "*.com": { upload: 1 }\n', 3, 'limits.*.com', /public suffix/],
    ['name: x\nlimits:\n  a.test: 5\n', 3, 'limits.a.test', /must be a map/],
    ['name: x\nlimits:\n  a.test: { bytes: 5 }\n', 3, 'limits.a.test', /unknown field "bytes"/],
  ])('refuses %j at line %d', (text, line, field, message) => {
    const err = problem(text)
    expect(err.line).toBe(line)
    expect(err.field).toBe(field)
    expect(err.problem).toMatch(message)
  })

  it("the including profile's ask and timeout govern; limits merge, the includer's first", () => {
    const defs = new Map(
      [
        'name: top\nonUnknown: ask\nallow: [a.test]\ninclude: [part]\nlimits:\n  a.test: { upload: 1 }\n',
        'name: part\nonUnknown: deny\napprovalTimeoutMs: 9\nallow: [b.test]\nlimits:\n  a.test: { upload: 2 }\n  b.test: { requests: 3 }\n',
      ].map((text) => {
        const def = parseProfile(text, `/p/${/name: (\w+)/.exec(text)?.[1]}.yaml`)
        return [def.name, def]
      }),
    )
    const spec = policySpecOf(resolveProfile('top', (n) => defs.get(n)))
    expect(spec.onUnknown).toBe('ask')
    expect(spec.approvalTimeoutMs).toBeUndefined()
    expect(spec.limits).toEqual([
      { pattern: 'a.test', upload: 1, from: 'top' },
      { pattern: 'b.test', requests: 3, from: 'part' },
    ])
    expect(compilePolicy(spec).limits.size).toBe(2)
  })
})

describe('network spec fields', () => {
  const catalogue = new ProfileCatalogue({ builtinDir: null })

  it('reads them', () => {
    const spec = networkPolicySpec(
      {
        allow: ['a.test'],
        onUnknown: 'ask',
        approvalTimeoutMs: 1000,
        limits: { 'a.test': { upload: '2KB', window: '10m' } },
      },
      catalogue,
    )
    expect(spec).toMatchObject({
      onUnknown: 'ask',
      approvalTimeoutMs: 1000,
      limits: [{ pattern: 'a.test', upload: 2000, windowMs: 600_000, from: 'custom' }],
    })
    expect(networkPolicySpec({ mode: 'report' }, catalogue).mode).toBe('report')
  })

  it.each([
    [{ mode: 'deny-all', onUnknown: 'ask' }, /needs mode allow-list/],
    [{ limits: [] }, /network.limits must be an object/],
    [{ limits: { 'a.test': { upload: 'x' } } }, /network.limits\["a.test"\]: upload/],
  ])('refuses %j', (network, message) => {
    expect(() => networkPolicySpec(network, catalogue)).toThrow(NetworkSpecError)
    expect(() => networkPolicySpec(network, catalogue)).toThrow(message)
  })
})
