// The runner's secret settings: ISORUN_SECRETS_FILE and ISORUN_UPSTREAM_CA at
// start, and `secrets` in POST /v1/sandboxes (unknown names are a 400 that
// lists the known ones). No value ever appears in an error.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, loadRunnerConfig, type RunnerConfig } from '../../../src/runner/config.js'
import { SandboxError } from '../../../src/runner/sandboxes.js'
import { parseCreateRequest } from '../../../src/runner/validate.js'

const VALUE = 'sk-ant-RUNNER-SECRET-VALUE'
let dir: string
let config: RunnerConfig

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ISORUN_AUTH: 'none', ISORUN_STATE_DIR: dir, ...extra }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isorun-runner-secrets-'))
  writeFileSync(
    join(dir, 'secrets.yaml'),
    [
      'secrets:',
      '  anthropic:',
      '    env: ANTHROPIC_API_KEY',
      '    from: { env: ANTHROPIC_VALUE }',
      '    hosts: [api.anthropic.com]',
      '    header: x-api-key',
      '',
    ].join('\n'),
  )
  config = loadRunnerConfig(
    env({ ISORUN_SECRETS_FILE: join(dir, 'secrets.yaml'), ANTHROPIC_VALUE: VALUE }),
  )
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

function createError(body: Record<string, unknown>): SandboxError {
  try {
    parseCreateRequest({ image: 'debian:bookworm', ...body }, config)
  } catch (err) {
    if (err instanceof SandboxError) return err
    throw err
  }
  throw new Error('expected a SandboxError')
}

describe('runner secrets', () => {
  it('loads the secrets file at start', () => {
    expect(config.secrets.map((s) => s.name)).toEqual(['anthropic'])
    expect(config.stateDir).toBe(dir)
  })

  it('passes known names through and refuses unknown ones with the known names', () => {
    const { request } = parseCreateRequest(
      { image: 'debian:bookworm', secrets: ['anthropic', 'anthropic'] },
      config,
    )
    expect(request.secrets).toEqual(['anthropic'])
    const unknown = createError({ secrets: ['anthropic', 'openai'] })
    expect(unknown.status).toBe(400)
    expect(unknown.code).toBe('unknown-secret')
    expect(unknown.message).toBe('unknown secret "openai"; known secrets: anthropic')
    expect(createError({ secrets: 'anthropic' }).message).toMatch(/list of secret names/)
    expect(
      createError({ secrets: ['anthropic'], env: { ANTHROPIC_API_KEY: 'mine' } }).message,
    ).toBe(
      'env.ANTHROPIC_API_KEY is where secret anthropic puts its placeholder; remove one of them',
    )
  })

  it('says how to define secrets when the runner has none', () => {
    const bare = loadRunnerConfig(env({}))
    try {
      parseCreateRequest({ image: 'debian:bookworm', secrets: ['x'] }, bare)
      throw new Error('expected a refusal')
    } catch (err) {
      expect((err as Error).message).toMatch(
        /the runner has no secrets \(set ISORUN_SECRETS_FILE\)/,
      )
    }
  })

  it('refuses a broken secrets file or upstream CA at start, naming the place and not the value', () => {
    const broken = join(dir, 'broken.yaml')
    writeFileSync(
      broken,
      'secrets:\n  a:\n    env: A\n    from: { env: NOPE }\n    hosts: [a.com]\n    header: x\n',
    )
    expect(() => loadRunnerConfig(env({ ISORUN_SECRETS_FILE: broken }))).toThrow(
      /^ISORUN_SECRETS_FILE: .*broken\.yaml:4:5: secrets\.a\.from: environment variable NOPE is not set/,
    )
    expect(() => loadRunnerConfig(env({ ISORUN_UPSTREAM_CA: broken }))).toThrow(ConfigError)
    expect(() => loadRunnerConfig(env({ ISORUN_UPSTREAM_CA: join(dir, 'none.pem') }))).toThrow(
      /ISORUN_UPSTREAM_CA=.*none\.pem: ENOENT/,
    )
    let message = ''
    try {
      loadRunnerConfig(
        env({ ISORUN_SECRETS_FILE: join(dir, 'secrets.yaml'), ANTHROPIC_VALUE: `${VALUE}\n\n` }),
      )
    } catch (err) {
      message = (err as Error).message
    }
    expect(message).toMatch(/control character/)
    expect(message).not.toContain(VALUE)
  })
})
