// substituteSecrets: the value replaces the placeholder only for a bound host,
// only in the secret's header and form; everything else goes out unchanged.

import { describe, expect, it } from 'vitest'
import { parseSecretBindings, SecretError } from '../../../src/secrets/binding.js'
import { SecretStore, type HeaderPair } from '../../../src/secrets/store.js'

const P = {
  anthropic: 'isorun-secret-anthropic-0123456789abcdef',
  openai: 'isorun-secret-openai-0123456789abcdef01',
  github: 'isorun-secret-github-0123456789abcdef01',
}
const V = { anthropic: 'sk-ant-REAL', openai: 'sk-REAL-openai', github: 'ghp_REAL' }

const store = new SecretStore(
  parseSecretBindings([
    {
      name: 'anthropic',
      placeholder: P.anthropic,
      value: V.anthropic,
      hosts: ['api.anthropic.test'],
      header: 'X-Api-Key',
    },
    {
      name: 'openai',
      placeholder: P.openai,
      value: V.openai,
      hosts: ['*.openai.test'],
      header: 'authorization',
      scheme: 'bearer',
    },
    {
      name: 'github',
      placeholder: P.github,
      value: V.github,
      hosts: ['github.test', 'api.github.test'],
      header: 'authorization',
      scheme: 'basic',
    },
  ]),
)

const b64 = (s: string): string => Buffer.from(s).toString('base64')

function sub(host: string, headers: HeaderPair[]): [string, string][] {
  return store.substituteSecrets(host, headers).headers
}

describe('substituteSecrets', () => {
  it.each<[string, string, HeaderPair[], [string, string][]]>([
    // raw header form
    [
      'raw, bound host',
      'api.anthropic.test',
      [['x-api-key', P.anthropic]],
      [['x-api-key', V.anthropic]],
    ],
    [
      'raw, header name in any case',
      'api.anthropic.test',
      [['X-API-KEY', P.anthropic]],
      [['X-API-KEY', V.anthropic]],
    ],
    [
      'raw, host in any spelling',
      'API.Anthropic.Test.',
      [['x-api-key', P.anthropic]],
      [['x-api-key', V.anthropic]],
    ],
    ['raw, unbound host', 'evil.test', [['x-api-key', P.anthropic]], [['x-api-key', P.anthropic]]],
    [
      'raw, bound host but another header',
      'api.anthropic.test',
      [['x-other', P.anthropic]],
      [['x-other', P.anthropic]],
    ],
    [
      'raw, placeholder inside other text',
      'api.anthropic.test',
      [['x-api-key', `k=${P.anthropic}`]],
      [['x-api-key', `k=${P.anthropic}`]],
    ],
    [
      'raw, placeholder as Bearer is not the raw form',
      'api.anthropic.test',
      [['x-api-key', `Bearer ${P.anthropic}`]],
      [['x-api-key', `Bearer ${P.anthropic}`]],
    ],
    [
      'raw, another secret’s placeholder',
      'api.anthropic.test',
      [['x-api-key', P.openai]],
      [['x-api-key', P.openai]],
    ],
    // bearer
    [
      'bearer, wildcard-bound host',
      'api.openai.test',
      [['Authorization', `Bearer ${P.openai}`]],
      [['Authorization', `Bearer ${V.openai}`]],
    ],
    [
      'bearer, scheme in any case',
      'api.openai.test',
      [['authorization', `bearer ${P.openai}`]],
      [['authorization', `Bearer ${V.openai}`]],
    ],
    [
      'bearer, the wildcard does not cover the apex',
      'openai.test',
      [['authorization', `Bearer ${P.openai}`]],
      [['authorization', `Bearer ${P.openai}`]],
    ],
    [
      'bearer, bare placeholder is not the form',
      'api.openai.test',
      [['authorization', P.openai]],
      [['authorization', P.openai]],
    ],
    [
      'bearer, placeholder inside a longer token',
      'api.openai.test',
      [['authorization', `Bearer x${P.openai}`]],
      [['authorization', `Bearer x${P.openai}`]],
    ],
    [
      'bearer, unbound host',
      'api.anthropic.test',
      [['authorization', `Bearer ${P.openai}`]],
      [['authorization', `Bearer ${P.openai}`]],
    ],
    // basic
    [
      'basic, placeholder as password',
      'github.test',
      [['authorization', `Basic ${b64(`x-access-token:${P.github}`)}`]],
      [['authorization', `Basic ${b64(`x-access-token:${V.github}`)}`]],
    ],
    [
      'basic, placeholder as user',
      'api.github.test',
      [['authorization', `Basic ${b64(`${P.github}:x-oauth-basic`)}`]],
      [['authorization', `Basic ${b64(`${V.github}:x-oauth-basic`)}`]],
    ],
    [
      'basic, placeholder inside the password',
      'github.test',
      [['authorization', `Basic ${b64(`u:p${P.github}`)}`]],
      [['authorization', `Basic ${b64(`u:p${P.github}`)}`]],
    ],
    [
      'basic, unbound host',
      'gitlab.test',
      [['authorization', `Basic ${b64(`u:${P.github}`)}`]],
      [['authorization', `Basic ${b64(`u:${P.github}`)}`]],
    ],
    [
      'basic, not base64 credentials',
      'github.test',
      [['authorization', `Basic ${P.github}`]],
      [['authorization', `Basic ${P.github}`]],
    ],
  ])('%s', (_name, host, headers, expected) => {
    expect(sub(host, headers)).toEqual(expected)
  })

  it('keeps order, duplicates and other headers, and replaces several secrets in one request', () => {
    const multi = new SecretStore(
      parseSecretBindings([
        {
          name: 'a',
          placeholder: 'placeholder-aaaaaaaaaa',
          value: 'A',
          hosts: ['x.test'],
          header: 'x-a',
        },
        {
          name: 'b',
          placeholder: 'placeholder-bbbbbbbbbb',
          value: 'B',
          hosts: ['x.test'],
          header: 'x-b',
        },
      ]),
    )
    const result = multi.substituteSecrets('x.test', [
      ['x-b', 'placeholder-bbbbbbbbbb'],
      ['accept', '*/*'],
      ['x-a', 'placeholder-aaaaaaaaaa'],
      ['x-a', 'placeholder-aaaaaaaaaa'],
      ['x-a', 'placeholder-bbbbbbbbbb'],
    ])
    expect(result.headers).toEqual([
      ['x-b', 'B'],
      ['accept', '*/*'],
      ['x-a', 'A'],
      ['x-a', 'A'],
      ['x-a', 'placeholder-bbbbbbbbbb'],
    ])
    expect([...result.used].sort()).toEqual(['a', 'b'])
  })

  it('does not change the headers it was given', () => {
    const headers: [string, string][] = [['x-api-key', P.anthropic]]
    store.substituteSecrets('api.anthropic.test', headers)
    expect(headers).toEqual([['x-api-key', P.anthropic]])
  })

  it('knows which hosts have a secret, and never shows a value', () => {
    expect(store.hasSecretFor('api.anthropic.test')).toBe(true)
    expect(store.hasSecretFor('deep.api.openai.test')).toBe(true)
    expect(store.hasSecretFor('evil.test')).toBe(false)
    expect(store.hasSecretFor('127.0.0.1')).toBe(false)
    const shown = JSON.stringify({ store, described: store.describe() })
    for (const value of Object.values(V)) expect(shown).not.toContain(value)
    expect(shown).toContain(P.anthropic)
  })
})

describe('parseSecretBindings', () => {
  const base = {
    name: 'a',
    placeholder: 'placeholder-aaaaaaaaaa',
    value: 'v',
    hosts: ['x.test'],
    header: 'x-a',
  }
  it.each([
    [{ ...base, hosts: ['*.com'] }, /public suffix/],
    [{ ...base, hosts: ['*'] }, /must be a host name or \*\.domain/],
    [{ ...base, hosts: ['10.0.0.1'] }, /must be a host name/],
    [{ ...base, hosts: ['x.test:8443'] }, /without a port/],
    [{ ...base, hosts: [] }, /non-empty list/],
    [{ ...base, header: 'x-a', scheme: 'bearer' }, /authorization header/],
    [{ ...base, header: 'host' }, /cannot be sent in host/],
    [{ ...base, header: 'bad header' }, /header name/],
    [{ ...base, placeholder: 'short' }, /placeholder must be/],
    [{ ...base, value: 'line\r\nInjected: 1' }, /control character/],
    [{ ...base, value: '' }, /value is empty/],
  ])('refuses %j', (binding, message) => {
    let error: Error | undefined
    try {
      parseSecretBindings([binding])
    } catch (err) {
      error = err as Error
    }
    expect(error).toBeInstanceOf(SecretError)
    expect(error?.message).toMatch(message)
    expect(error?.message).not.toContain('Injected')
  })
})
