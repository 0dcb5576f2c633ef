// The sandbox CLI commands against the running stack: run, ls, logs, rm.
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { run } from './setup/sh.js'
import { client, e2e, skipReason } from './helpers.js'

const CLI = resolve(import.meta.dirname, '../../dist/src/cli/main.js')

function isorun(...args: string[]) {
  return run('node', [CLI, ...args], {
    check: false,
    env: { ...process.env, ISORUN_URL: e2e.url, ISORUN_API_KEY: e2e.apiKey },
  })
}

describe.skipIf(skipReason !== undefined)('isorun CLI against the stack', () => {
  it('run: creates, runs, prints output and what was blocked, destroys, exits with the command code', async () => {
    const before = (await client().list()).length
    const r = await isorun(
      'run',
      '--profile',
      'claude-code',
      '--image',
      e2e.sandboxImage,
      '--',
      'sh',
      '-c',
      'echo out; echo err >&2; curl -sS -m 3 https://random-site.com; exit 3',
    )
    expect(r.code).toBe(3)
    expect(r.stdout).toContain('out')
    expect(r.stderr).toContain('err')
    expect(r.stderr).toMatch(/creating a sandbox from .* \(claude-code\)/)
    expect(r.stderr).toMatch(/blocked 1 connection/)
    expect(r.stderr).toMatch(/BLOCKED\s+connect\s+random-site\.com:443\s+not-in-allow-list/)
    expect((await client().list()).length).toBe(before)
  })

  it('run --json prints the result for programs', async () => {
    const r = await isorun(
      'run',
      '--allow',
      'pypi.org',
      '--image',
      e2e.sandboxImage,
      '--json',
      '--',
      'curl',
      '-sS',
      '-m',
      '5',
      'http://pypi.org/hello',
    )
    expect(r.code).toBe(0)
    const body = JSON.parse(r.stdout) as { exitCode: number; stdout: string; blocked: unknown[] }
    expect(body.exitCode).toBe(0)
    expect(body.stdout).toContain('stand-in for pypi.org')
    expect(body.blocked).toEqual([])
  })

  it('ls, logs --blocked and rm', async () => {
    const sbx = await client().create({ image: e2e.sandboxImage, networkProfile: 'locked-down' })
    try {
      await sbx.exec('curl -sS -m 2 https://example.com')
      const ls = await isorun('ls')
      expect(ls.code).toBe(0)
      expect(ls.stdout).toMatch(new RegExp(`^ID\\s+IMAGE\\s+PROFILE\\s+STATUS`, 'm'))
      expect(ls.stdout).toMatch(new RegExp(`${sbx.id}\\s+\\S+\\s+locked-down\\s+running`))
      const json = JSON.parse((await isorun('ls', '--json')).stdout) as { id: string }[]
      expect(json.map((s) => s.id)).toContain(sbx.id)
      const logs = await isorun('logs', sbx.id, '--blocked')
      expect(logs.code).toBe(0)
      expect(logs.stdout).toMatch(/BLOCKED\s+connect\s+example\.com:443\s+denied-by-mode/)
      const jsonLogs = (await isorun('logs', sbx.id, '--json')).stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { host: string })
      expect(jsonLogs.map((e) => e.host)).toContain('example.com')
      const rm = await isorun('rm', sbx.id)
      expect(rm.code).toBe(0)
      expect(rm.stdout).toContain(`removed ${sbx.id}`)
      await expect(client().get(sbx.id)).rejects.toMatchObject({ status: 404 })
    } finally {
      await sbx.destroy()
    }
  })

  it('errors are one line with a non-zero exit', async () => {
    const missing = await isorun('logs', 'nosuchsandbox')
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/^isorun: no sandbox "nosuchsandbox" \[sandbox-not-found\]/)
    const offline = await run('node', [CLI, 'ls'], {
      check: false,
      env: { ...process.env, ISORUN_URL: 'http://127.0.0.1:9', ISORUN_API_KEY: 'x'.repeat(32) },
    })
    expect(offline.code).toBe(1)
    expect(offline.stderr).toMatch(/cannot reach the isorun runner at http:\/\/127\.0\.0\.1:9/)
    expect(offline.stderr).not.toMatch(/\n\s+at /)
  })
})
