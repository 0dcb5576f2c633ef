// The stack as a user starts it: `docker compose up -d` brings the runner up
// healthy; the API needs the key; the SDK lists the live profile catalogue.
import { describe, expect, it } from 'vitest'
import { IsorunApiError, IsorunUsageError, Isorun } from 'isorun'
import { docker } from './setup/sh.js'
import { client, e2e, skipReason } from './helpers.js'

describe.skipIf(skipReason !== undefined)('runner stack', () => {
  it('comes up healthy with a healthcheck and a restart policy', async () => {
    const id = await docker(
      'ps',
      '-q',
      '--filter',
      `label=com.docker.compose.project=${e2e.project}`,
      '--filter',
      'label=com.docker.compose.service=runner',
    )
    expect(await docker('inspect', '-f', '{{.State.Health.Status}}', id)).toBe('healthy')
    expect(await docker('inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', id)).toBe(
      'unless-stopped',
    )
    // Published on loopback only.
    expect(await docker('port', id, '8080')).toMatch(/^127\.0\.0\.1:\d+$/)
  })

  it('requires the API key', async () => {
    const res = await fetch(`${e2e.url}/v1/network-profiles`)
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } })
    const wrong = new Isorun({ url: e2e.url, apiKey: 'x'.repeat(48) })
    await expect(wrong.networkProfiles()).rejects.toMatchObject({
      name: 'IsorunApiError',
      status: 401,
    })
  })

  it('networkProfiles() returns the live catalogue', async () => {
    const profiles = await client().networkProfiles()
    const names = profiles.map((p) => p.name)
    for (const name of [
      'unrestricted',
      'locked-down',
      'claude-code',
      'openai',
      'package-registries',
      'huggingface',
      'google-ai',
    ]) {
      expect(names).toContain(name)
    }
    expect(profiles.find((p) => p.name === 'locked-down')).toMatchObject({ mode: 'deny-all' })
    const detail = await client().networkProfile('claude-code')
    expect(detail.includes).toEqual(
      expect.arrayContaining(['anthropic-api', 'pypi', 'npm', 'github', 'crates-io']),
    )
    expect(detail.allow).toContainEqual({ rule: 'files.pythonhosted.org', from: 'pypi' })
  })

  it('networkProfile and network together: an SDK error before any request, and a 400 from the API', async () => {
    // Pointed at a port nothing listens on: only a check made before sending can produce a usage error.
    const offline = new Isorun({ url: 'http://127.0.0.1:9', apiKey: 'unused-key-unused-key' })
    const both = { image: 'x', networkProfile: 'claude-code', network: { allow: ['pypi.org'] } }
    await expect(offline.create(both)).rejects.toBeInstanceOf(IsorunUsageError)
    await expect(offline.create(both)).rejects.toMatchObject({ code: 'conflicting-network' })
    await expect(
      client()
        .create({ image: e2e.sandboxImage, networkProfile: 'claude-code' })
        .then((s) => s.destroy()),
    ).resolves.toBeUndefined()

    const res = await fetch(`${e2e.url}/v1/sandboxes`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${e2e.apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...both, image: e2e.sandboxImage }),
    })
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('conflicting-network')
    expect(body.error.message).toMatch(/networkProfile and network/)
  })

  it('answers 404 for an unknown profile (listing the known ones) and 400 for invalid rules, creating nothing', async () => {
    const before = await docker('ps', '-aq', '--filter', 'label=isorun.sandbox')
    const unknown = client().create({ image: e2e.sandboxImage, networkProfile: 'no-such-profile' })
    await expect(unknown).rejects.toBeInstanceOf(IsorunApiError)
    await expect(unknown).rejects.toMatchObject({
      status: 404,
      code: 'unknown-profile',
      message: expect.stringContaining('claude-code'),
    })
    const invalid = client().create({ image: e2e.sandboxImage, network: { allow: ['*.com'] } })
    await expect(invalid).rejects.toMatchObject({
      status: 400,
      code: 'invalid-network',
      message: expect.stringContaining('public suffix'),
    })
    expect(await docker('ps', '-aq', '--filter', 'label=isorun.sandbox')).toBe(before)
  })

  it('a missing image that cannot be pulled is a clear error naming the image, and nothing is left', async () => {
    const before = await docker('network', 'ls', '-q', '--filter', 'label=isorun.sandbox')
    const create = client().create({
      image: 'isorun-e2e/does-not-exist:1',
      networkProfile: 'locked-down',
    })
    await expect(create).rejects.toMatchObject({
      code: 'image-pull-failed',
      message: expect.stringContaining('isorun-e2e/does-not-exist:1'),
    })
    expect(await docker('network', 'ls', '-q', '--filter', 'label=isorun.sandbox')).toBe(before)
  })
})
