// The operator's secrets file: what it reads, and errors that name the file,
// line and field but never a value.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ProfileError } from '../../../src/profiles/index.js'
import { SecretError } from '../../../src/secrets/binding.js'
import { loadSecretsFile, parseSecretsFile } from '../../../src/secrets/config.js'

const VALUE = 'sk-ant-VERY-SECRET-VALUE'
const ENV = { ISORUN_SECRET_ANTHROPIC: VALUE, EMPTY: '' }

const GOOD = `secrets:
  anthropic:
    env: ANTHROPIC_API_KEY
    from: { env: ISORUN_SECRET_ANTHROPIC }
    hosts: [API.anthropic.com]
    header: X-Api-Key
  github:
    env: GITHUB_TOKEN
    from: { file: /run/secrets/gh }
    hosts: [github.com, "*.github.com"]
    header: authorization
    scheme: basic
    placeholder: isorun-secret-github-fixed-0001
`

describe('parseSecretsFile', () => {
  it('reads every field and resolves values from the environment and files', () => {
    const secrets = parseSecretsFile(GOOD, 's.yaml', ENV, (path) => {
      expect(path).toBe('/run/secrets/gh')
      return 'ghp_FROM_FILE\n'
    })
    expect(secrets).toEqual([
      {
        name: 'anthropic',
        env: 'ANTHROPIC_API_KEY',
        hosts: ['api.anthropic.com'],
        header: 'x-api-key',
        scheme: 'raw',
        value: VALUE,
      },
      {
        name: 'github',
        env: 'GITHUB_TOKEN',
        hosts: ['github.com', '*.github.com'],
        header: 'authorization',
        scheme: 'basic',
        value: 'ghp_FROM_FILE',
        placeholder: 'isorun-secret-github-fixed-0001',
      },
    ])
  })

  it('reads an empty file as no secrets', () => {
    expect(parseSecretsFile('secrets:\n', 's.yaml', ENV)).toEqual([])
  })

  function failure(text: string, env: NodeJS.ProcessEnv = ENV): string {
    try {
      parseSecretsFile(text, 's.yaml', env, () => {
        throw Object.assign(new Error(`EACCES ${VALUE}`), { code: 'EACCES' })
      })
    } catch (err) {
      if (err instanceof ProfileError || err instanceof SecretError) return err.message
      throw err
    }
    throw new Error('expected an error')
  }

  const secret = (body: string): string => `secrets:\n  a:\n${body}`
  const fields = (extra: Record<string, string>): string =>
    secret(
      Object.entries({
        env: 'A_KEY',
        from: '{ env: ISORUN_SECRET_ANTHROPIC }',
        hosts: '[a.example.com]',
        header: 'x-api-key',
        ...extra,
      })
        .filter(([, v]) => v !== '')
        .map(([k, v]) => `    ${k}: ${v}\n`)
        .join(''),
    )

  it.each([
    ['secrets:\n  a: [\n', /^s\.yaml:3:1: YAML syntax error/],
    ['secret: {}\n', /^s\.yaml:1:1: secret: unknown field/],
    [
      fields({ hots: '[a.example.com]' }),
      /^s\.yaml:7:5: secrets\.a\.hots: unknown field; a secret has env/,
    ],
    [fields({ env: '' }), /^s\.yaml:2:3: secrets\.a\.env: missing/],
    [
      fields({ env: '1BAD' }),
      /^s\.yaml:3:10: secrets\.a\.env: "1BAD" is not an environment variable/,
    ],
    [
      fields({ hosts: '["*.com"]' }),
      /^s\.yaml:5:5: secrets\.a\.hosts: hosts\[0\]: .*public suffix/,
    ],
    [
      fields({ header: 'x-api-key', scheme: 'bearer' }),
      /^s\.yaml:6:5: secrets\.a\.header: scheme bearer .*authorization/,
    ],
    [
      fields({ from: '{ env: NOT_SET }' }),
      /^s\.yaml:4:5: secrets\.a\.from: environment variable NOT_SET is not set/,
    ],
    [fields({ from: '{ env: EMPTY }' }), /environment variable EMPTY is not set or empty/],
    [
      fields({ from: '{ file: /nope }' }),
      /^s\.yaml:4:5: secrets\.a\.from: cannot read \/nope \(EACCES\)$/,
    ],
    [
      fields({ from: 'ISORUN_SECRET_ANTHROPIC' }),
      /must be \{ env: VARIABLE \} or \{ file: \/path\/to\/file \}/,
    ],
    [
      `${fields({})}  b:\n    env: A_KEY\n    from: { env: ISORUN_SECRET_ANTHROPIC }\n    hosts: [b.example.com]\n    header: x-b\n`,
      /secrets\.b\.env: A_KEY is used by another secret too/,
    ],
    ['secrets:\n  Bad Name: {}\n', /"Bad Name" must be lowercase/],
  ])('refuses %j', (text, message) => {
    const error = failure(text)
    expect(error).toMatch(message)
    expect(error).not.toContain(VALUE)
  })

  it('refuses a value with a line break in it without showing it', () => {
    const error = failure(fields({}), { ISORUN_SECRET_ANTHROPIC: `${VALUE}\nX-Injected: yes` })
    expect(error).toMatch(/secrets\.a\.from: the value contains a line break/)
    expect(error).not.toContain(VALUE)
  })
})

describe('loadSecretsFile', () => {
  it('reads the file and says which one it cannot read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'isorun-secrets-'))
    try {
      writeFileSync(join(dir, 'value'), `${VALUE}\n`)
      const file = join(dir, 'secrets.yaml')
      writeFileSync(file, fieldsFile(join(dir, 'value')))
      expect(loadSecretsFile(file, {})[0]?.value).toBe(VALUE)
      expect(() => loadSecretsFile(join(dir, 'missing.yaml'))).toThrow(
        /cannot read the secrets file .*missing\.yaml/,
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

function fieldsFile(valueFile: string): string {
  return `secrets:\n  a:\n    env: A_KEY\n    from: { file: ${valueFile} }\n    hosts: [a.example.com]\n    header: x-api-key\n`
}
