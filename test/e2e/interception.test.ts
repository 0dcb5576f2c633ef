// The off-data-path half of interception on a real engine: a sandbox created
// with a secret has the placeholder in its env and the merged CA bundle, read-
// only, at every variable's path; the CA key and the secret's value are
// nowhere in the sandbox, in `docker inspect` of the sandbox or the proxy, in
// the runner API or in the logs; the proxy holds the CA and the secret, and
// gets them again when it restarts (at once, or when a runner that was down
// starts).

import type { Readable } from 'node:stream'
import Dockerode from 'dockerode'
import { pack } from 'tar-stream'
import { describe, expect, it } from 'vitest'
import { readImageBundle } from '../../src/runner/trust-volume.js'
import type { Sandbox } from 'isorun'
import { BUNDLE_VARIABLES, SANDBOX_TRUST_DIR } from '../../src/tls/sandbox-trust.js'
import { docker, run } from './setup/sh.js'
import {
  client,
  compose,
  e2e,
  proxyContainer,
  proxyEgressAddress,
  runnerHealthy,
  sandboxContainer,
  skipReason,
  waitFor,
  withSandbox,
} from './helpers.js'

interface InterceptionSummary {
  ca: { fingerprint: string; cert: string } | null
  secrets: { name: string; placeholder: string; hosts: string[] }[]
  upstreamCa: { certificates: number } | null
}

async function proxyInterception(sbx: Sandbox): Promise<InterceptionSummary> {
  const token = await docker(
    'inspect',
    '-f',
    '{{index .Config.Labels "isorun.admin-token"}}',
    proxyContainer(sbx),
  )
  const address = await proxyEgressAddress(sbx)
  const r = await fetch(`http://${address}:9090/interception`, {
    headers: { Authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(5000),
  })
  if (!r.ok) throw new Error(`GET /interception answered ${r.status}`)
  return (await r.json()) as InterceptionSummary
}

/** `docker compose …` on the test stack, with its settings; never throws. */
function composeRun(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(e2e.compose[0] as string, [...e2e.compose.slice(1), ...args], {
    check: false,
    env: { ...process.env, ...e2e.composeEnv },
  })
}

/** The runner's copy of the sandbox's CA key (egress side, in its state volume). */
async function keptKey(id: string): Promise<string> {
  return (await composeRun('exec', '-T', 'runner', 'cat', `/var/lib/isorun/sandboxes/${id}/ca.key`))
    .stdout
}

describe.skipIf(skipReason !== undefined)('interception: CA, trust files and secrets', () => {
  it('gives the sandbox placeholders and the merged bundle, and nothing secret', async () => {
    await withSandbox({ networkProfile: 'locked-down', secrets: ['anthropic'] }, async (sbx) => {
      expect(sbx.info.secrets).toEqual(['anthropic'])
      const placeholder = (await sbx.exec('printenv ANTHROPIC_API_KEY')).stdout.trim()
      expect(placeholder).toMatch(/^isorun-secret-anthropic-[0-9a-f]{32}$/)

      // Every variable names the merged bundle: the image's roots, then this sandbox's CA.
      const bundle = `${SANDBOX_TRUST_DIR}/bundle.pem`
      for (const name of BUNDLE_VARIABLES)
        expect((await sbx.exec(['printenv', name])).stdout.trim()).toBe(bundle)
      expect((await sbx.exec('printenv JAVA_TOOL_OPTIONS')).stdout).toContain(
        `-Djavax.net.ssl.trustStore=${SANDBOX_TRUST_DIR}/truststore.jks`,
      )
      const count = async (file: string): Promise<number> =>
        Number((await sbx.exec(['grep', '-c', 'BEGIN CERTIFICATE', file])).stdout.trim())
      const systemRoots = await count('/etc/ssl/certs/ca-certificates.crt')
      expect(systemRoots).toBeGreaterThan(50)
      expect(await count(bundle)).toBe(systemRoots + 1)
      const proxy = await proxyInterception(sbx)
      const ca = (await sbx.exec(['cat', `${SANDBOX_TRUST_DIR}/ca.pem`])).stdout
      expect(ca.trim()).toBe(proxy.ca?.cert.trim())
      expect((await sbx.exec(['cat', bundle])).stdout.trim().endsWith(ca.trim())).toBe(true)

      // The writer container that filled the volume is gone.
      expect(await docker('ps', '-aq', '--filter', `name=^isorun-sbx-${sbx.id}-trust$`)).toBe('')

      // Read-only, even for root in the sandbox.
      expect((await sbx.exec('id -u')).stdout.trim()).toBe('0')
      const write = await sbx.exec(`echo x >> ${bundle}; touch ${SANDBOX_TRUST_DIR}/new`)
      expect(write.stderr).toMatch(/Read-only file system/)
      expect((await sbx.exec(`mount -o remount,rw ${SANDBOX_TRUST_DIR}`)).exitCode).not.toBe(0)
      expect(await count(bundle)).toBe(systemRoots + 1)

      // The proxy has the CA and the secret with this sandbox's placeholder.
      expect(proxy.secrets).toEqual([
        expect.objectContaining({ name: 'anthropic', placeholder, hosts: ['api.anthropic.com'] }),
      ])
      expect(proxy.upstreamCa?.certificates).toBe(1)

      // The key and the value are nowhere in the sandbox, in docker inspect, the API or the logs.
      const key = await keptKey(sbx.id)
      expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
      const keyLine = key.split('\n')[1] as string
      expect((await sbx.exec(['grep', '-r', 'PRIVATE KEY', SANDBOX_TRUST_DIR])).stdout).toBe('')
      for (const needle of [keyLine, e2e.secretValue]) {
        const found = await sbx.exec([
          'grep',
          '-rlF',
          '--exclude-dir=proc',
          '--exclude-dir=sys',
          '--exclude-dir=dev',
          needle,
          '/',
        ])
        expect(found.stdout, `"${needle.slice(0, 12)}…" found in the sandbox`).toBe('')
      }
      const sandboxEnv = (await sbx.exec('env')).stdout
      const inspected = [
        await docker('inspect', sandboxContainer(sbx)),
        await docker('inspect', proxyContainer(sbx)),
        await docker('volume', 'inspect', `isorun-sbx-${sbx.id}-ca`),
        JSON.stringify((await client().get(sbx.id)).info),
        JSON.stringify(
          await client()
            .list()
            .then((l) => l.map((s) => s.info)),
        ),
        (await run('docker', ['logs', proxyContainer(sbx)])).stdout,
        sandboxEnv,
      ]
      for (const text of inspected)
        for (const needle of [keyLine, e2e.secretValue]) expect(text).not.toContain(needle)
      expect(JSON.stringify(proxy)).not.toContain(e2e.secretValue)
    })
  })

  it("finds an image's bundle through symlinks (Alpine's /etc/ssl/cert.pem), or says it has none, and leaves no engine connection open", async () => {
    const engine = new Dockerode()
    const image = async (
      tag: string,
      entries: Parameters<ReturnType<typeof pack>['entry']>[0][],
    ) => {
      const tar = pack()
      for (const header of entries) {
        if (header.type === 'symlink') tar.entry(header)
        else if (header.type === 'directory') tar.entry(header)
        else if (header.size) tar.entry(header, Buffer.alloc(header.size, 'A'))
        else tar.entry(header, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
      }
      tar.finalize()
      const stream = await engine.importImage(tar as unknown as NodeJS.ReadableStream, {
        repo: 'isorun-e2e/bundle-probe',
        tag,
      })
      await new Promise((resolve, reject) =>
        engine.modem.followProgress(stream, (err: Error | null) =>
          err ? reject(err) : resolve(undefined),
        ),
      )
      return engine.createContainer({ Image: `isorun-e2e/bundle-probe:${tag}`, Cmd: ['/none'] })
    }
    const linked = await image('linked', [
      {
        name: 'etc/ssl/certs/ca-certificates.crt',
        type: 'symlink',
        linkname: '../bundles/real.pem',
      },
      { name: 'etc/ssl/bundles/real.pem', type: 'file' },
    ])
    const bare = await image('bare', [{ name: 'etc/hostname', type: 'file' }])
    // A hostile image: the bundle's path is a directory with megabytes under it, of which
    // only the first entry is read.
    const directory = await image('directory', [
      { name: 'etc/ssl/certs/ca-certificates.crt', type: 'directory' },
      { name: 'etc/ssl/certs/ca-certificates.crt/big', type: 'file', size: 4 * 1024 * 1024 },
    ])
    // The engine's archive responses, to check that none is left open (a connection per
    // create that the runner would never close).
    const archives: Readable[] = []
    const recorded = (container: Dockerode.Container): Dockerode.Container =>
      Object.assign(Object.create(container) as Dockerode.Container, {
        getArchive: async (options: { path: string }) => {
          const stream = (await container.getArchive(options)) as Readable
          archives.push(stream)
          return stream
        },
      })
    try {
      expect(await readImageBundle(recorded(linked))).toEqual({
        path: '/etc/ssl/certs/ca-certificates.crt',
        text: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      })
      expect(await readImageBundle(recorded(bare))).toBeUndefined()
      expect(await readImageBundle(recorded(directory))).toBeUndefined()
      expect(archives.length).toBeGreaterThanOrEqual(3)
      expect(archives.filter((stream) => !stream.destroyed)).toHaveLength(0)
    } finally {
      for (const container of [linked, bare, directory]) await container.remove({ force: true })
      await run(
        'docker',
        ['rmi', ...['linked', 'bare', 'directory'].map((tag) => `isorun-e2e/bundle-probe:${tag}`)],
        { check: false },
      )
    }
  })

  it('refuses unknown secret names with the known ones', async () => {
    await expect(
      client().create({ image: e2e.sandboxImage, secrets: ['nope'] }),
    ).rejects.toMatchObject({
      status: 400,
      code: 'unknown-secret',
      message: 'unknown secret "nope"; known secrets: anthropic',
    })
  })

  it('gives a restarted proxy its CA and secret back at once, and when the runner was down', async () => {
    const sbx = await client().create({
      image: e2e.sandboxImage,
      networkProfile: 'locked-down',
      secrets: ['anthropic'],
    })
    const sentAgain = (what: string): Promise<InterceptionSummary> =>
      waitFor(
        what,
        async () => {
          const s = await proxyInterception(sbx)
          return s.ca ? s : undefined
        },
        60_000,
      )
    let runnerDown = false
    const proxyStarts = async (): Promise<string> =>
      docker('inspect', '-f', '{{.State.StartedAt}}', proxyContainer(sbx))
    try {
      const before = await proxyInterception(sbx)
      expect(before.ca).not.toBeNull()
      expect(before.secrets).toHaveLength(1)

      // The proxy loses what it held in memory; the runner follows the engine's events
      // and sends it again from its state directory, without a restart of its own.
      const firstStart = await proxyStarts()
      await docker('restart', proxyContainer(sbx))
      expect(await proxyStarts()).not.toBe(firstStart)
      const resent = await sentAgain('the CA to be sent to the restarted proxy')
      expect(resent.ca?.fingerprint).toBe(before.ca?.fingerprint)
      expect(resent.secrets).toEqual(before.secrets)

      // With the runner down nobody sends it: the restarted proxy has no CA and no secret...
      runnerDown = true
      await compose('stop', 'runner')
      await docker('restart', proxyContainer(sbx))
      const lost = await waitFor('the restarted proxy', () => proxyInterception(sbx), 60_000)
      expect(lost.ca).toBeNull()
      expect(lost.secrets).toEqual([])
      // ...until the runner starts again and adopts the sandbox.
      await compose('start', 'runner')
      await runnerHealthy()
      runnerDown = false
      const after = await sentAgain('the CA to be sent again after the runner started')
      expect(after.ca?.fingerprint).toBe(before.ca?.fingerprint)
      expect(after.secrets).toEqual(before.secrets)
      const runnerLogs = await composeRun('logs', 'runner')
      expect(runnerLogs.stdout + runnerLogs.stderr).not.toContain(e2e.secretValue)
    } finally {
      // The stack's runner serves the next tests, whatever failed here.
      if (runnerDown) {
        await compose('start', 'runner')
        await runnerHealthy()
      }
      await sbx.destroy()
    }
    // Destroy leaves neither the trust volume nor the kept CA.
    expect(await docker('volume', 'ls', '-q', '--filter', `label=isorun.sandbox=${sbx.id}`)).toBe(
      '',
    )
    const kept = await composeRun(
      'exec',
      '-T',
      'runner',
      'ls',
      `/var/lib/isorun/sandboxes/${sbx.id}`,
    )
    expect(kept.code).not.toBe(0)
  })
})
