// Which allowed TLS connections are intercepted: hosts with endpoint rules,
// hosts a secret is bound to, hosts allowed by a profile marked inspect: true;
// nothing else, and never a refused connection.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  compilePolicy,
  decide,
  interceptionFor,
  type BoundHosts,
  type Policy,
} from '../../../src/policy/index.js'
import { ProfileError, parseProfile } from '../../../src/profiles/parse-profile.js'
import {
  networkPolicySpec,
  NetworkSpecError,
  policySpecOf,
  ProfileCatalogue,
} from '../../../src/profiles/index.js'

function hostDecision(policy: Policy, host: string) {
  return decide({ protocol: 'connect', host, port: 443 }, policy)
}

const bound: BoundHosts = { hasSecretFor: (host) => host === 'api.anthropic.test' }

let dir: string
let catalogue: ProfileCatalogue

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isorun-inspect-'))
  writeFileSync(
    join(dir, 'gh.yaml'),
    [
      'name: gh',
      'allow: [api.github.test, github.test]',
      'endpoints:',
      '  api.github.test:',
      '    - { methods: [GET], path: /repos/**, action: allow }',
    ].join('\n'),
  )
  writeFileSync(join(dir, 'watched.yaml'), 'name: watched\ninspect: true\nallow: [watched.test]\n')
  writeFileSync(
    join(dir, 'agent.yaml'),
    'name: agent\ninclude: [gh, watched]\nallow: [api.anthropic.test, plain.test]\n',
  )
  catalogue = new ProfileCatalogue({ builtinDir: null, dirs: [dir] })
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('interceptionFor', () => {
  it('intercepts for endpoint rules, bound secrets and inspect: true, and nothing else', () => {
    const profile = catalogue.get('agent')
    if (!profile) throw new Error(JSON.stringify(catalogue.problems()))
    expect(profile.inspect).toEqual(['watched'])
    const policy = compilePolicy(policySpecOf(profile))
    const verdict = (host: string) => interceptionFor(policy, hostDecision(policy, host), bound)
    expect(verdict('api.github.test')).toMatchObject({
      intercept: true,
      reasons: ['endpoint-rules'],
      endpoints: { host: 'api.github.test', from: 'gh' },
    })
    expect(verdict('api.anthropic.test')).toMatchObject({
      intercept: true,
      reasons: ['bound-secret'],
    })
    expect(verdict('watched.test')).toMatchObject({ intercept: true, reasons: ['inspect'] })
    expect(verdict('github.test').intercept).toBe(false)
    expect(verdict('plain.test').intercept).toBe(false)
    // Refused: nothing to intercept, whatever else holds.
    expect(verdict('elsewhere.test')).toEqual({
      intercept: false,
      reasons: [],
      endpoints: undefined,
    })
  })

  it('inspects what an allow-all mode allows when the profile itself is marked', () => {
    const policy = compilePolicy({
      name: 'open',
      mode: 'allow-all',
      allow: [],
      deny: [{ rule: 'bad.test', from: 'open' }],
      inspect: ['open'],
    })
    expect(interceptionFor(policy, hostDecision(policy, 'any.test')).reasons).toEqual(['inspect'])
    expect(interceptionFor(policy, hostDecision(policy, 'bad.test')).intercept).toBe(false)
  })
})

describe('inspect in profiles', () => {
  it('must be true or false, with the position of the value', () => {
    let error: unknown
    try {
      parseProfile('name: x\ninspect: yes please\n', '/p/x.yaml')
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ProfileError)
    expect((error as Error).message).toBe(
      '/p/x.yaml:2:10: inspect: must be true or false (true: TLS to the hosts this profile allows is intercepted)',
    )
    expect(parseProfile('name: x\ninspect: true\n', '/p/x.yaml').inspect).toBe(true)
    expect(parseProfile('name: x\n', '/p/x.yaml').inspect).toBe(false)
  })
})

describe('endpoints and inspect in network specs', () => {
  it('reads endpoint rules per host and inspect, with the includes’ own', () => {
    const spec = networkPolicySpec(
      {
        allow: ['api.github.test', 'x.test'],
        inspect: true,
        include: ['watched'],
        endpoints: {
          'API.github.test': [{ methods: ['get'], path: '/repos/**', action: 'allow' }],
        },
      },
      catalogue,
    )
    expect(spec.inspect).toEqual(['custom', 'watched'])
    expect(spec.endpoints).toEqual([
      {
        host: 'api.github.test',
        from: 'custom',
        rules: [{ methods: ['GET'], path: '/repos/**', action: 'allow' }],
      },
    ])
    const policy = compilePolicy(spec)
    const post = decide(
      { protocol: 'connect', host: 'api.github.test', port: 443, method: 'POST', path: '/x' },
      policy,
    )
    expect(post).toMatchObject({ action: 'deny', reason: 'no-endpoint-match' })
    expect(interceptionFor(policy, hostDecision(policy, 'x.test')).reasons).toEqual(['inspect'])
  })

  it.each([
    [{ inspect: 'yes' }, 'network.inspect must be true or false'],
    [{ endpoints: [] }, 'network.endpoints must be an object of host: [rules]'],
    [{ endpoints: { 'a.test': [] } }, 'network.endpoints["a.test"] must be a non-empty list'],
    [{ endpoints: { 'a.test': [{ path: '/x' }] } }, 'network.endpoints["a.test"][0].action must'],
    [
      { endpoints: { 'a.test': [{ action: 'allow', verb: 'GET' }] } },
      'network.endpoints["a.test"][0].verb is not a field',
    ],
    [
      { endpoints: { 'a.test': [{ action: 'allow', path: '/a/../b' }] } },
      'network.endpoints["a.test"][0]: path "/a/../b": contains a ".." segment',
    ],
    [
      { endpoints: { '10.0.0.1': [{ action: 'allow' }] } },
      'network.endpoints["10.0.0.1"]: endpoint host "10.0.0.1" must be a name',
    ],
  ])('refuses %j', (network, message) => {
    expect(() => networkPolicySpec(network, catalogue)).toThrow(NetworkSpecError)
    expect(() => networkPolicySpec(network, catalogue)).toThrow(message)
  })
})
