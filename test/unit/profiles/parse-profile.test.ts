import { describe, expect, it } from 'vitest'
import { parseProfile, ProfileError } from '../../../src/profiles/parse-profile.js'

function problem(text: string, file = '/p/x.yaml'): ProfileError {
  try {
    parseProfile(text, file)
  } catch (err) {
    if (err instanceof ProfileError) return err
    throw err
  }
  throw new Error('expected a ProfileError')
}

describe('parseProfile', () => {
  it('reads every field', () => {
    const def = parseProfile(
      [
        'name: x',
        'description: a test',
        'mode: allow-list',
        'include: [pypi]',
        'allow:',
        '  - Example.COM.',
        '  - "*.example.org:8443"',
        'deny: [evil.example.com]',
        'endpoints:',
        '  api.example.com:',
        '    - { methods: [get], path: /v1/**, action: allow }',
        '',
      ].join('\n'),
      '/p/x.yaml',
    )
    expect(def).toMatchObject({
      name: 'x',
      description: 'a test',
      mode: 'allow-list',
      include: ['pypi'],
      allow: ['Example.COM.', '*.example.org:8443'],
      deny: ['evil.example.com'],
    })
    expect(def.endpoints).toEqual([
      { host: 'api.example.com', rules: [{ methods: ['GET'], path: '/v1/**', action: 'allow' }] },
    ])
  })

  it('defaults the mode to allow-list and accepts empty lists', () => {
    expect(parseProfile('name: x\nallow:\ndeny: []\n', '/p/x.yaml')).toMatchObject({
      mode: 'allow-list',
      allow: [],
      deny: [],
    })
  })

  it.each([
    ['a YAML syntax error', 'name: x\nallow: [\n', 3, undefined, /YAML syntax error/],
    [
      'a duplicate key',
      'name: x\nallow: []\nallow: []\n',
      3,
      undefined,
      /YAML syntax error.*unique/,
    ],
    [
      'an unknown field, with a suggestion',
      'name: x\nallowed: [a.com]\n',
      2,
      'allowed',
      /unknown field \(did you mean "allow"\?\)/,
    ],
    [
      'a bad pattern',
      'name: x\nallow:\n  - example.com\n  - "*.co.uk"\n',
      4,
      'allow[1]',
      /public suffix/,
    ],
    [
      'a mid-label wildcard',
      'name: x\ndeny: ["api-*.example.com"]\n',
      2,
      'deny[0]',
      /whole first label/,
    ],
    ['a bad port', 'name: x\nallow: ["example.com:99999"]\n', 2, 'allow[0]', /port "99999"/],
    [
      'a tcp: rule without a port',
      'name: x\nallow:\n  - tcp:github.com\n',
      3,
      'allow[0]',
      /tcp: rule names its port/,
    ],
    [
      'a tcp: deny rule',
      'name: x\ndeny:\n  - tcp:github.com:22\n',
      3,
      'deny[0]',
      /write "github\.com:22"/,
    ],
    ['an empty pattern', 'name: x\nallow: [""]\n', 2, 'allow[0]', /empty pattern/],
    ['a name that differs from the file', 'name: y\n', 1, 'name', /must match the file name "x"/],
    ['a bad mode', 'name: x\nmode: allow-some\n', 2, 'mode', /allow-all, deny-all, allow-list/],
    [
      'allow rules under deny-all',
      'name: x\nmode: deny-all\nallow: [a.com]\n',
      3,
      'allow',
      /deny-all/,
    ],
    ['a list that is a string', 'name: x\nallow: example.com\n', 2, 'allow', /must be a list/],
    ['a self-include', 'name: x\ninclude: [x]\n', 2, 'include', /cannot include itself/],
    [
      'an endpoint path with ..',
      'name: x\nendpoints:\n  a.com:\n    - { path: /a/../b, action: allow }\n',
      4,
      'endpoints.a.com[0]',
      /".." segment/,
    ],
    [
      'an endpoint without action',
      'name: x\nendpoints:\n  a.com:\n    - { path: /a }\n',
      4,
      'endpoints.a.com[0]',
      /needs an action/,
    ],
    ['not a map', '- a\n- b\n', 1, undefined, /a profile is a map/],
    ['a missing name', 'allow: [a.com]\n', 1, 'name', /missing/],
  ])('refuses %s, naming file:line and field', (_what, text, line, field, message) => {
    const err = problem(text)
    expect(err.file).toBe('/p/x.yaml')
    expect(err.line).toBe(line)
    expect(err.field).toBe(field)
    expect(err.problem).toMatch(message)
    expect(err.message.startsWith(`/p/x.yaml:${line}:`)).toBe(true)
    expect(err.message).not.toContain('\n')
  })
})
