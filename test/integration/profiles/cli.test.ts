// The built CLI, as a user runs it: `isorun check`, `isorun profiles`, and
// what a broken profile looks like.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const CLI = resolve(import.meta.dirname, '../../../dist/src/cli/main.js')
const exec = promisify(execFile)

async function isorun(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('node', [CLI, ...args], {
      env: { ...process.env, ISORUN_PROFILES_DIR: '' },
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describe('isorun check', () => {
  it.each([
    ['claude-code', 'https://pypi.org/simple/', 0],
    ['claude-code', 'https://files.pythonhosted.org/x.whl', 0],
    ['claude-code', 'https://example.com', 1],
    ['locked-down', 'https://api.anthropic.com', 1],
    ['unrestricted', 'https://example.com', 0],
    ['openai', 'https://api.openai.com/v1/models', 0],
    ['openai', 'https://static.crates.io/x', 1],
  ])('isorun check %s %s exits %i', async (profile, target, code) => {
    const r = await isorun('check', profile, target)
    expect(r.code).toBe(code)
    expect(r.stdout).toMatch(code === 0 ? /^ALLOW / : /^DENY /)
  })

  it('prints the decision, rule and reason, and what to change', async () => {
    const allowed = await isorun('check', 'claude-code', 'https://files.pythonhosted.org/x.whl')
    expect(allowed.stdout).toMatch(/rule\s+files\.pythonhosted\.org\s+\(from pypi\)/)
    const denied = await isorun('check', 'claude-code', 'example.com:8080')
    expect(denied.stdout).toContain('DENY  example.com:8080')
    expect(denied.stdout).toMatch(/reason\s+not-in-allow-list/)
    expect(denied.stdout).toMatch(/add "example\.com:8080"/)
    const json = await isorun(
      'check',
      'claude-code',
      'http://pypi.org/simple/',
      '--method',
      'post',
      '--json',
    )
    expect(JSON.parse(json.stdout)).toMatchObject({
      action: 'allow',
      host: 'pypi.org',
      rule: 'pypi.org',
      from: 'pypi',
    })
  })

  it('raw TCP targets (tcp://host:port) are checked against tcp: rules', async () => {
    const ssh = await isorun('check', 'github', 'tcp://github.com:22')
    expect(ssh.code).toBe(0)
    expect(ssh.stdout).toMatch(/rule\s+tcp:github\.com:22\s+\(from github\)/)
    const raw443 = await isorun('check', 'github', 'tcp://github.com:443')
    expect(raw443.code).toBe(1)
    expect(raw443.stdout).toMatch(/reason\s+unreadable-payload/)
    expect(raw443.stdout).toContain('add the rule "tcp:github.com:443"')
    const tls443 = await isorun('check', 'github', 'github.com:443')
    expect(tls443.code).toBe(0)
    expect(tls443.stdout).toContain('check tcp://github.com:443')
    const shown = await isorun('profiles', 'show', 'github')
    expect(shown.stdout).toMatch(/tcp:github\.com:22\s+from github/)
  })

  it('says for https:// whether the host is intercepted and which endpoint rule decides', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'isorun-cli-endpoints-'))
    try {
      await writeFile(
        join(dir, 'gh.yaml'),
        [
          'name: gh',
          'allow: [api.github.test, github.test]',
          'endpoints:',
          '  api.github.test:',
          '    - { methods: [GET], path: /repos/**, action: allow }',
          '    - { path: /**, action: deny }',
        ].join('\n'),
      )
      const check = (...args: string[]) => isorun('check', 'gh', ...args, '--profiles-dir', dir)
      const get = await check('https://api.github.test/repos/a/b')
      expect(get.code).toBe(0)
      expect(get.stdout).toMatch(/rule\s+api\.github\.test GET \/repos\/\*\*\s+\(from gh\)/)
      expect(get.stdout).toMatch(/intercepted\s+yes: the host has endpoint rules/)
      const post = await check('https://api.github.test/repos/a/b', '--method', 'POST', '--json')
      expect(post.code).toBe(1)
      expect(JSON.parse(post.stdout)).toMatchObject({
        action: 'deny',
        reason: 'endpoint-denied',
        rule: 'api.github.test * /**',
        interception: { intercepted: true, reasons: ['endpoint-rules'] },
      })
      const plain = await check('https://github.test/x')
      expect(plain.code).toBe(0)
      expect(plain.stdout).toMatch(/intercepted\s+no: spliced without decryption/)
      await writeFile(join(dir, 'watched.yaml'), 'name: watched\ninspect: true\nallow: [w.test]\n')
      const watched = await isorun('check', 'watched', 'https://w.test/', '--profiles-dir', dir)
      expect(watched.stdout).toMatch(/intercepted\s+yes: its profile is marked inspect: true/)
      const shown = await isorun('profiles', 'show', 'watched', '--profiles-dir', dir)
      expect(shown.stdout).toContain('inspect: TLS intercepted for the hosts allowed by watched')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('exits 2 on a usage error or an unknown profile, without a stack trace', async () => {
    for (const args of [
      ['check', 'no-such-profile', 'https://example.com'],
      ['check', 'claude-code'],
      ['check', 'claude-code', 'ftp://x'],
      ['check', 'github', 'tcp://github.com'],
      ['check', '--bogus'],
    ]) {
      const r = await isorun(...args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(/^isorun: /)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    }
    expect((await isorun('check', 'nope', 'x.com')).stderr).toContain('known profiles: ')
  })
})

describe('isorun profiles', () => {
  it('prints a table, and JSON with --json', async () => {
    const table = await isorun('profiles')
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+MODE\s+DESCRIPTION$/)
    expect(table.stdout).toMatch(/\nclaude-code\s+allow-list\s+/)
    const json = JSON.parse((await isorun('profiles', '--json')).stdout) as {
      name: string
      description: string
      mode: string
    }[]
    expect(json).toContainEqual(expect.objectContaining({ name: 'locked-down', mode: 'deny-all' }))
    expect(Object.keys(json[0] ?? {}).sort()).toEqual(['description', 'mode', 'name'])
  })

  it('show NAME lists resolved rules with the profile each came from', async () => {
    const text = await isorun('profiles', 'show', 'openai')
    expect(text.stdout).toMatch(/api\.openai\.com\s+from openai-api/)
    expect(text.stdout).toMatch(/pypi\.org\s+from pypi/)
    const json = JSON.parse((await isorun('profiles', 'show', 'openai', '--json')).stdout) as {
      allow: { canonical: string; from: string }[]
    }
    expect(json.allow).toContainEqual(
      expect.objectContaining({ canonical: 'registry.npmjs.org', from: 'npm' }),
    )
  })

  describe('with broken profiles', () => {
    let dir: string
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'isorun-cli-profiles-'))
    })
    afterAll(async () => rm(dir, { recursive: true, force: true }))

    it.each([
      ['syntax', 'name: syntax\nallow: [\n', /syntax\.yaml:3:1: YAML syntax error/],
      [
        'unknown',
        'name: unknown\nalow: [a.com]\n',
        /unknown\.yaml:2:1: alow: unknown field \(did you mean "allow"\?\)/,
      ],
      [
        'pattern',
        'name: pattern\nallow:\n  - "*.com"\n',
        /pattern\.yaml:3:5: allow\[0\]: .*public suffix/,
      ],
      [
        'cycle',
        'name: cycle\ninclude:\n  - cycle2\n',
        /cycle2?\.yaml:\d+:\d+: include: include cycle cycle2? -> cycle2? -> cycle2?/,
      ],
    ])('%s: one line naming file:line and what to fix, exit 2', async (name, text, message) => {
      const own = await mkdtemp(join(dir, `${name}-`))
      await writeFile(join(own, `${name}.yaml`), text)
      if (name === 'cycle')
        await writeFile(join(own, 'cycle2.yaml'), 'name: cycle2\ninclude: [cycle]\n')
      for (const args of [['profiles'], ['check', 'claude-code', 'https://pypi.org']]) {
        const r = await isorun(...args, '--profiles-dir', own)
        expect(r.code).toBe(2)
        const lines = r.stderr.trim().split('\n')
        expect(lines[0]).toMatch(message)
        expect(lines.every((l) => l.includes('.yaml:'))).toBe(true)
        expect(r.stderr).not.toMatch(/\n\s+at /)
      }
    })
  })
})
