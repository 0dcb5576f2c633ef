// Lifecycle faults: a dead proxy means no network; a restarted runner keeps
// sandboxes usable; destroy and timeouts leave nothing; policies change live.
import { writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docker, run } from './setup/sh.js'
import {
  client,
  compose,
  e2e,
  proxyContainer,
  runnerHealthy,
  skipReason,
  waitFor,
  withSandbox,
} from './helpers.js'

async function leftovers(id: string): Promise<string> {
  const containers = await docker('ps', '-aq', '--filter', `label=isorun.sandbox=${id}`)
  const networks = await docker('network', 'ls', '-q', '--filter', `label=isorun.sandbox=${id}`)
  return `${containers}${networks}`.trim()
}

describe.skipIf(skipReason !== undefined)('lifecycle', () => {
  it('killing the proxy leaves the sandbox with no network at all (fail closed)', async () => {
    await withSandbox({ networkProfile: 'claude-code' }, async (sbx) => {
      expect((await sbx.exec('curl -sS -m 5 http://pypi.org/hello')).stdout).toContain('stand-in')
      await docker('kill', proxyContainer(sbx))
      expect((await sbx.exec('curl -sS -m 3 http://pypi.org/hello')).exitCode).not.toBe(0)
      expect(
        (await sbx.exec(`curl --noproxy '*' -sS -m 3 https://pypi.org/simple/`)).exitCode,
      ).not.toBe(0)
      expect(
        (await sbx.exec(`curl --noproxy '*' -sS -m 3 http://${e2e.standinIp}/hello`)).exitCode,
      ).not.toBe(0)
      const dig = await sbx.exec('dig +tries=1 +time=2 pypi.org A')
      expect(dig.stdout).not.toMatch(/status: NOERROR/)
      expect((await sbx.refresh()).status).toBe('proxy-down')
    })
  })

  it('destroy leaves no container or network behind', async () => {
    const sbx = await client().create({ image: e2e.sandboxImage, networkProfile: 'locked-down' })
    expect(await leftovers(sbx.id)).not.toBe('')
    await sbx.destroy()
    expect(await leftovers(sbx.id)).toBe('')
    await expect(client().get(sbx.id)).rejects.toMatchObject({ status: 404 })
    await sbx.destroy() // twice is fine
  })

  it('a sandbox past its timeout is destroyed', async () => {
    const sbx = await client().create({
      image: e2e.sandboxImage,
      networkProfile: 'locked-down',
      timeoutMs: 2000,
    })
    expect(sbx.info.expiresAt).not.toBeNull()
    await waitFor(
      'the timed-out sandbox to be gone',
      async () => ((await leftovers(sbx.id)) === '' ? true : undefined),
      20_000,
    )
    await expect(client().get(sbx.id)).rejects.toMatchObject({ status: 404 })
  })

  it('updateNetwork replaces the policy live, for new connections', async () => {
    await withSandbox({ networkProfile: 'claude-code' }, async (sbx) => {
      expect((await sbx.exec('curl -sS -m 5 http://pypi.org/hello')).stdout).toContain('stand-in')
      const info = await sbx.updateNetwork({ networkProfile: 'locked-down' })
      expect(info.networkProfile).toBe('locked-down')
      expect(
        (await sbx.exec('curl -sS -m 3 -o /dev/null -w "%{http_code}" http://pypi.org/hello'))
          .stdout,
      ).toBe('403')
      await sbx.updateNetwork({ network: { allow: ['pypi.org'] } })
      expect((await sbx.exec('curl -sS -m 5 http://pypi.org/hello')).stdout).toContain('stand-in')
      expect(
        (
          await sbx.exec(
            'curl -sS -m 3 -o /dev/null -w "%{http_code}" http://files.pythonhosted.org/hello',
          )
        ).stdout,
      ).toBe('403')
      await expect(sbx.updateNetwork({ network: { allow: ['*.com'] } })).rejects.toMatchObject({
        status: 400,
      })
    })
  })

  it('a profile added or changed in the watched directory is live, for the catalogue and the running proxies', async () => {
    const file = join(e2e.profilesDir, 'e2e-live.yaml')
    const write = (allow: string, description: string) =>
      writeFile(file, `name: e2e-live\ndescription: ${description}\nallow:\n  - ${allow}\n`, {
        mode: 0o644,
      })
    await write('pypi.org', 'first version')
    try {
      await waitFor('the new profile in the catalogue', async () =>
        (await client().networkProfiles()).some((p) => p.name === 'e2e-live') ? true : undefined,
      )
      await withSandbox({ networkProfile: 'e2e-live' }, async (sbx) => {
        expect((await sbx.exec('curl -sS -m 5 http://pypi.org/hello')).stdout).toContain('stand-in')
        await write('files.pythonhosted.org', 'second version')
        await waitFor('the changed profile', async () =>
          (await client().networkProfiles()).find((p) => p.name === 'e2e-live')?.description ===
          'second version'
            ? true
            : undefined,
        )
        await waitFor('the proxy to enforce the changed profile', async () =>
          (await sbx.exec('curl -sS -m 3 -o /dev/null -w "%{http_code}" http://pypi.org/hello'))
            .stdout === '403'
            ? true
            : undefined,
        )
        expect(
          (await sbx.exec('curl -sS -m 5 http://files.pythonhosted.org/hello')).stdout,
        ).toContain('stand-in')
        // A broken edit keeps the last good version.
        await writeFile(file, 'name: e2e-live\nallow: [\n', { mode: 0o644 })
        await new Promise((r) => setTimeout(r, 3000))
        expect(
          (await client().networkProfiles()).find((p) => p.name === 'e2e-live')?.description,
        ).toBe('second version')
        expect(
          (await sbx.exec('curl -sS -m 5 http://files.pythonhosted.org/hello')).stdout,
        ).toContain('stand-in')
      })
    } finally {
      await rm(file, { force: true })
    }
  })

  it('restarting the runner keeps existing sandboxes usable, and removes orphans', async () => {
    const sbx = await client().create({ image: e2e.sandboxImage, networkProfile: 'claude-code' })
    try {
      await sbx.updateNetwork({ network: { allow: ['files.pythonhosted.org'] } })
      expect(
        (await sbx.exec('curl -sS -m 5 http://files.pythonhosted.org/hello')).stdout,
      ).toContain('stand-in')
      // An orphan: a labelled network whose sandbox does not exist.
      await docker(
        'network',
        'create',
        '--internal',
        '--label',
        'isorun.sandbox=orphan00e2e',
        '--label',
        'isorun.role=network',
        'isorun-sbx-orphan00e2e',
      )
      await compose('restart', 'runner')
      await runnerHealthy()
      const again = await client().get(sbx.id)
      expect(again.info.status).toBe('running')
      // The live policy (the update above), not the one it was created with.
      expect(again.info.networkProfile).toBe('custom')
      expect(
        (await again.exec('curl -sS -m 5 http://files.pythonhosted.org/hello')).stdout,
      ).toContain('stand-in')
      expect(
        (await again.exec('curl -sS -m 3 -o /dev/null -w "%{http_code}" http://pypi.org/hello'))
          .stdout,
      ).toBe('403')
      expect(await again.networkEvents({ action: 'allow' })).toContainEqual(
        expect.objectContaining({ host: 'files.pythonhosted.org' }),
      )
      expect(await leftovers('orphan00e2e')).toBe('')
    } finally {
      await run('docker', ['network', 'rm', 'isorun-sbx-orphan00e2e'], { check: false })
      await sbx.destroy()
    }
  })
})
