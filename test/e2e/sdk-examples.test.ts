// The two examples of the documentation, as tests.
import { describe, expect, it } from 'vitest'
import { DEMO_PACKAGE } from './setup/wheel.js'
import { client, e2e, proxyLogLines, skipReason, standinRequests, waitFor } from './helpers.js'

describe.skipIf(skipReason !== undefined)('SDK examples', () => {
  it('locked-down: curl to example.com fails, and the proxy log and networkEvents() show it blocked', async () => {
    const isorun = client()
    const sbx = await isorun.create({ image: e2e.sandboxImage, networkProfile: 'locked-down' })
    try {
      const r = await sbx.exec('curl -m 2 https://example.com')
      expect(r.exitCode).not.toBe(0)
      expect(r.stderr).toMatch(/403/)
      const events = await sbx.networkEvents({ action: 'deny' })
      expect(events).toContainEqual(
        expect.objectContaining({
          host: 'example.com',
          port: 443,
          action: 'deny',
          reason: 'denied-by-mode',
          profile: 'locked-down',
          sandbox: sbx.id,
        }),
      )
      const lines = await waitFor('the blocked line in docker logs', async () => {
        const found = (await proxyLogLines(sbx)).filter(
          (l) => l.host === 'example.com' && l.action === 'deny',
        )
        return found.length > 0 ? found : undefined
      })
      expect(lines[0]).toMatchObject({
        msg: 'blocked',
        protocol: 'connect',
        sandbox: sbx.id,
        rule: 'mode:deny-all',
      })
    } finally {
      await sbx.destroy()
    }
  })

  it('claude-code: pip install works (from the stand-in index), a random site is blocked and logged', async () => {
    const isorun = client()
    const sbx = await isorun.create({
      image: e2e.sandboxImage,
      networkProfile: 'claude-code',
      // Debian's python marks the system environment as managed (PEP 668).
      env: {
        PIP_BREAK_SYSTEM_PACKAGES: '1',
        PIP_DISABLE_PIP_VERSION_CHECK: '1',
        PIP_NO_CACHE_DIR: '1',
      },
    })
    try {
      const r = await sbx.exec(`pip install ${DEMO_PACKAGE.name}`)
      expect(r.stderr + r.stdout).toMatch(/Successfully installed/)
      expect(r.exitCode).toBe(0)
      const check = await sbx.exec([
        'python3',
        '-c',
        `import ${DEMO_PACKAGE.module}; print(${DEMO_PACKAGE.module}.VALUE)`,
      ])
      expect(check.stdout.trim()).toBe(DEMO_PACKAGE.value)
      // Both names went through the proxy to the stand-in.
      const hosts = (await standinRequests()).map((q) => q.host)
      expect(hosts).toContain('pypi.org')
      expect(hosts).toContain('files.pythonhosted.org')

      const blocked = await sbx.exec('curl -m 2 https://random-site.com')
      expect(blocked.exitCode).not.toBe(0)
      const events = await sbx.networkEvents({ action: 'deny' })
      expect(events).toContainEqual(
        expect.objectContaining({
          host: 'random-site.com',
          action: 'deny',
          reason: 'not-in-allow-list',
        }),
      )
      const allowed = await sbx.networkEvents({ action: 'allow' })
      expect(allowed).toContainEqual(
        expect.objectContaining({
          host: 'pypi.org',
          protocol: 'connect',
          sni: 'pypi.org',
          rule: 'pypi.org',
        }),
      )
      expect(allowed).toContainEqual(
        expect.objectContaining({ host: 'files.pythonhosted.org', rule: 'files.pythonhosted.org' }),
      )
      const line = await waitFor('the blocked line in docker logs', async () =>
        (await proxyLogLines(sbx)).find((l) => l.host === 'random-site.com'),
      )
      expect(line).toMatchObject({
        action: 'deny',
        reason: 'not-in-allow-list',
        profile: 'claude-code',
      })
    } finally {
      await sbx.destroy()
    }
  })
})
