// End-to-end set-up on a real Docker engine: builds the images locally (there
// is no registry here), starts a stand-in for pypi.org / files.pythonhosted.org
// on the egress network, and brings the runner stack up with `docker compose`
// (or `docker-compose` v1) exactly as a user would, plus the operator settings
// that point the proxies' names at the stand-in.
//
// Without a Docker engine the suite is skipped with a message, unless
// ISORUN_E2E=required (as in CI), where that is an error.

import { randomBytes } from 'node:crypto'
import { chmod, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TestProject } from 'vitest/node'
import { makeCertificates } from '../../helpers/certs.js'
import { buildImage, docker, dockerOk, run, runVisible } from './sh.js'
import { bundleFixture } from './bundle-fixture.js'
import {
  API_STANDIN_NAMES,
  buildGitRepo,
  buildNpmTarball,
  DEMO_NPM,
  STANDIN_NAMES,
  STREAM_STANDIN_NAMES,
} from './registry-fixtures.js'
import { buildDemoWheel, DEMO_PACKAGE } from './wheel.js'

export interface E2EContext {
  readonly skip?: string
  readonly url: string
  readonly apiKey: string
  readonly project: string
  readonly compose: readonly string[]
  readonly composeEnv: Record<string, string>
  readonly standinIp: string
  readonly standinName: string
  readonly sandboxImage: string
  readonly profilesDir: string
  readonly caCert: string
  /** The value of the `anthropic` secret the runner is configured with (to look for leaks). */
  readonly secretValue: string
}

declare module 'vitest' {
  export interface ProvidedContext {
    e2e: E2EContext
  }
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const PROJECT = 'isorun-e2e'
const STANDIN = 'isorun-e2e-standin'
const SANDBOX_IMAGE = 'isorun-e2e/sandbox:latest'
/** The stand-in's image: Node plus git, for `git http-backend`. */
const STANDIN_IMAGE = 'isorun-e2e/standin:latest'
/** Every name the stand-in serves: in its certificate and in the proxies' host overrides. */
const ALL_STANDIN_NAMES = [...STANDIN_NAMES, ...API_STANDIN_NAMES, ...STREAM_STANDIN_NAMES]
/** Signs the runner's approval webhook to the stand-in. */
const WEBHOOK_SECRET = randomBytes(24).toString('hex')
/** The runner's file size limit in the end-to-end stack. */
export const E2E_MAX_FILE_BYTES = 64 * 1024 * 1024

function log(text: string): void {
  process.stderr.write(`[e2e] ${text}\n`)
}

async function dockerUnavailable(): Promise<string | undefined> {
  try {
    const r = await run('docker', ['info', '--format', '{{.ServerVersion}}'], {
      check: false,
      timeoutMs: 20_000,
    })
    return r.code === 0 ? undefined : `docker info failed: ${r.stderr.trim().split('\n')[0]}`
  } catch (err) {
    return `no docker command: ${(err as Error).message}`
  }
}

/** `docker compose` (v2) when present, else `docker-compose` (v1). */
async function composeCommand(): Promise<string[]> {
  if (await dockerOk('compose', 'version')) return ['docker', 'compose']
  return ['docker-compose']
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = net.createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => res(port))
    })
    server.on('error', rej)
  })
}

async function waitHealthy(container: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let status = ''
  while (Date.now() < deadline) {
    status = await docker('inspect', '-f', '{{.State.Health.Status}}', container)
    if (status === 'healthy') return
    await new Promise((r) => setTimeout(r, 500))
  }
  const logs = await run('docker', ['logs', '--tail', '50', container], { check: false })
  throw new Error(
    `the runner did not become healthy within ${timeoutMs} ms (status ${status})\n${logs.stdout}${logs.stderr}`,
  )
}

async function buildSandboxImage(caCert: string): Promise<void> {
  await buildImage(
    SANDBOX_IMAGE,
    [
      'FROM isorun-ci/sandbox:bookworm',
      '# The sandbox trusts the test CA that signed the stand-in index, as a company image trusts its internal CA.',
      'COPY isorun-e2e-ca.crt /usr/local/share/ca-certificates/isorun-e2e-ca.crt',
      'RUN update-ca-certificates >/dev/null',
      '# pip as in the python:3.12 images the documented examples name (Debian marks its Python as managed, PEP 668).',
      'ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1',
    ],
    { 'isorun-e2e-ca.crt': caCert },
  )
}

async function buildStandinImage(): Promise<void> {
  await buildImage(STANDIN_IMAGE, [
    'FROM isorun-ci/node:20',
    'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends git >/dev/null && rm -rf /var/lib/apt/lists/*',
  ])
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const unavailable = await dockerUnavailable()
  if (unavailable) {
    if (process.env.ISORUN_E2E === 'required')
      throw new Error(
        `end-to-end tests need a Docker engine: ${unavailable} (run scripts/ci/ensure-docker.sh)`,
      )
    log(
      `SKIPPING the end-to-end tests: ${unavailable}. Start a Docker engine to run them (scripts/ci/ensure-docker.sh).`,
    )
    project.provide('e2e', { skip: unavailable } as E2EContext)
    return async () => undefined
  }
  const started = Date.now()
  log('building images (local base images, the product image, the test sandbox image)…')
  await runVisible(
    join(ROOT, 'scripts/ci/build-base-images.sh'),
    ['node', 'sandbox'],
    'base images',
  )
  await runVisible(join(ROOT, 'scripts/ci/build-product-image.sh'), [], 'product image')

  const certs = await makeCertificates(ALL_STANDIN_NAMES)
  await buildSandboxImage(certs.caFile)
  await buildStandinImage()
  const standinDir = await mkdtemp(join(tmpdir(), 'isorun-e2e-standin-'))
  await copyFile(
    join(ROOT, 'test/e2e/fixtures/pypi-standin.mjs'),
    join(standinDir, 'pypi-standin.mjs'),
  )
  await writeFile(join(standinDir, 'server.crt'), certs.cert)
  await writeFile(join(standinDir, 'server.key'), certs.key)
  const wheel = await buildDemoWheel(standinDir)
  const npmTarball = await buildNpmTarball(standinDir)
  await buildGitRepo(standinDir)
  await bundleFixture(
    join(ROOT, 'test/e2e/fixtures/stream-standin.ts'),
    join(standinDir, 'stream-standin.cjs'),
  )
  await run('chmod', ['-R', 'a+rX', standinDir])
  const profilesDir = await mkdtemp(join(tmpdir(), 'isorun-e2e-profiles-'))
  await chmod(profilesDir, 0o755)
  // The operator's secrets (a value in a file) and the stand-in's CA as an extra upstream CA.
  const secretsDir = await mkdtemp(join(tmpdir(), 'isorun-e2e-secrets-'))
  const secretValue = `sk-e2e-${randomBytes(16).toString('hex')}`
  await writeFile(join(secretsDir, 'anthropic'), `${secretValue}\n`, { mode: 0o600 })
  await copyFile(certs.caFile, join(secretsDir, 'upstream-ca.pem'))
  await writeFile(
    join(secretsDir, 'secrets.yaml'),
    [
      'secrets:',
      '  anthropic:',
      '    env: ANTHROPIC_API_KEY',
      '    from: { file: /etc/isorun/secrets.d/anthropic }',
      '    hosts: [api.anthropic.com]',
      '    header: x-api-key',
      '',
    ].join('\n'),
  )

  const compose = await composeCommand()
  const composeArgs = [...compose.slice(1), '-p', PROJECT, '-f', join(ROOT, 'docker-compose.yml')]
  const port = await freePort()
  const apiKey = randomBytes(24).toString('hex')
  const baseEnv: Record<string, string> = {
    ISORUN_API_KEY: apiKey,
    ISORUN_PORT: String(port),
    ISORUN_IMAGE: 'isorun:local',
    ISORUN_PROFILES_HOST_DIR: profilesDir,
    ISORUN_SECRETS_HOST_DIR: secretsDir,
    ISORUN_SECRETS_FILE: '/etc/isorun/secrets.d/secrets.yaml',
    ISORUN_UPSTREAM_CA: '/etc/isorun/secrets.d/upstream-ca.pem',
  }
  const composeRun = (args: string[], env: Record<string, string>) =>
    runVisible(compose[0] as string, [...composeArgs, ...args], 'compose', {
      ...process.env,
      ...env,
    })

  // Leftovers of an interrupted earlier run would hold the names.
  await run('docker', ['rm', '-f', STANDIN], { check: false })
  await run(compose[0] as string, [...composeArgs, 'down', '-v', '--remove-orphans'], {
    check: false,
    env: { ...process.env, ...baseEnv },
  })

  // Create the stack (and its egress network) first, then put the stand-in on
  // that network, then start the runner with the stand-in's address in its settings.
  log('creating the compose stack…')
  await composeRun(['up', '--no-start'], baseEnv)
  await docker(
    'run',
    '-d',
    '--name',
    STANDIN,
    '--label',
    'isorun-e2e=standin',
    '--network',
    'isorun-egress',
    '-e',
    `ISORUN_E2E_WEBHOOK_SECRET=${WEBHOOK_SECRET}`,
    '-v',
    `${standinDir}:/standin:ro`,
    STANDIN_IMAGE,
    'node',
    '/standin/pypi-standin.mjs',
    '/standin',
    wheel,
    DEMO_PACKAGE.name,
    npmTarball,
    DEMO_NPM.name,
    DEMO_NPM.version,
  )
  const standinIp = await docker(
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "isorun-egress").IPAddress}}',
    STANDIN,
  )
  const composeEnv: Record<string, string> = {
    ...baseEnv,
    // Only the stand-in's own address is opened, not the egress network (where the runner lives).
    ISORUN_ALLOW_PRIVATE: `${standinIp}/32`,
    ISORUN_PROXY_EXTRA_HOSTS: ALL_STANDIN_NAMES.map((n) => `${n}:${standinIp}`).join(','),
    ISORUN_DEFAULT_TIMEOUT_MS: String(20 * 60_000),
    // Room for the 50 MB file test, small enough to test the limit.
    ISORUN_MAX_FILE_BYTES: String(E2E_MAX_FILE_BYTES),
    // The stand-in is the approval webhook's receiver too (it answers only some approvals).
    ISORUN_APPROVAL_WEBHOOK_URL: `http://${standinIp}/approval-webhook`,
    ISORUN_APPROVAL_WEBHOOK_SECRET: WEBHOOK_SECRET,
  }
  log(`starting the runner (stand-in at ${standinIp})…`)
  await composeRun(['up', '-d'], composeEnv)
  const runner = await docker(
    'ps',
    '-q',
    '--filter',
    `label=com.docker.compose.project=${PROJECT}`,
    '--filter',
    'label=com.docker.compose.service=runner',
  )
  await waitHealthy(runner, 120_000)
  log(
    `stack healthy on 127.0.0.1:${port} after ${((Date.now() - started) / 1000).toFixed(0)} s of set-up`,
  )

  project.provide('e2e', {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    project: PROJECT,
    compose: [...compose, '-p', PROJECT, '-f', join(ROOT, 'docker-compose.yml')],
    composeEnv,
    standinIp,
    standinName: STANDIN,
    sandboxImage: SANDBOX_IMAGE,
    profilesDir,
    caCert: certs.caFile,
    secretValue,
  })

  return async () => {
    if (process.env.ISORUN_E2E_KEEP) {
      log('ISORUN_E2E_KEEP is set: leaving the stack up')
      return
    }
    // Sandboxes first (their proxies hold the egress network), then the stack.
    const ids = await run('docker', ['ps', '-aq', '--filter', 'label=isorun.sandbox'], {
      check: false,
    })
    const url = `http://127.0.0.1:${port}`
    const list = await fetch(`${url}/v1/sandboxes`, {
      headers: { Authorization: `Bearer ${apiKey}` },
    }).then(
      (r) => r.json() as Promise<{ id: string }[]>,
      () => [],
    )
    for (const s of Array.isArray(list) ? list : [])
      await fetch(`${url}/v1/sandboxes/${s.id}`, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${apiKey}` },
      }).catch(() => undefined)
    if (ids.stdout.trim() !== '' && Array.isArray(list) && list.length === 0)
      log('note: sandboxes from another runner exist on this engine; left alone')
    await run('docker', ['rm', '-f', STANDIN], { check: false })
    await run(compose[0] as string, [...composeArgs, 'down', '-v', '--remove-orphans'], {
      check: false,
      env: { ...process.env, ...composeEnv },
    })
    await rm(standinDir, { recursive: true, force: true })
    await rm(profilesDir, { recursive: true, force: true })
    await rm(secretsDir, { recursive: true, force: true })
    await rm(certs.dir, { recursive: true, force: true })
  }
}
