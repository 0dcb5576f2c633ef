// Shared pieces of the end-to-end tests: the stack's coordinates from the
// global set-up, an SDK client, and sandboxes that are always destroyed.

import { resolve } from 'node:path'
import { inject } from 'vitest'
import { Isorun, type Approval, type CreateOptions, type Sandbox } from 'isorun'
import { docker, run } from './setup/sh.js'

export const e2e = inject('e2e')
/** Why the suite is skipped (no Docker engine), or undefined. */
export const skipReason = e2e.skip

export function client(): Isorun {
  return new Isorun({ url: e2e.url, apiKey: e2e.apiKey })
}

const CLI = resolve(import.meta.dirname, '../../dist/src/cli/main.js')

/** The built `isorun` CLI against the stack; never throws on a non-zero exit. */
export function isorunCli(...args: string[]) {
  return run('node', [CLI, ...args], {
    check: false,
    env: { ...process.env, ISORUN_URL: e2e.url, ISORUN_API_KEY: e2e.apiKey },
  })
}

/** The next approval of a running `approvals()` iterator. */
export async function nextApproval(approvals: AsyncGenerator<Approval>): Promise<Approval> {
  const { value, done } = await approvals.next()
  if (done) throw new Error('the approvals stream ended')
  return value
}

/** Creates a sandbox, runs `fn`, and destroys the sandbox whatever happens. */
export async function withSandbox<T>(
  options: Partial<CreateOptions>,
  fn: (sandbox: Sandbox) => Promise<T>,
): Promise<T> {
  const sandbox = await client().create({ image: e2e.sandboxImage, ...options } as CreateOptions)
  try {
    return await fn(sandbox)
  } finally {
    await sandbox.destroy()
  }
}

export function proxyContainer(sandbox: Sandbox): string {
  return `isorun-sbx-${sandbox.id}-proxy`
}

export function sandboxContainer(sandbox: Sandbox): string {
  return `isorun-sbx-${sandbox.id}`
}

/** The proxy's address on the egress network (where its admin API listens). */
export function proxyEgressAddress(sandbox: Sandbox): Promise<string> {
  return docker(
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "isorun-egress").IPAddress}}',
    proxyContainer(sandbox),
  )
}

/** The id of the stack's runner container. */
export function runnerContainer(): Promise<string> {
  return docker(
    'ps',
    '-q',
    '--filter',
    `label=com.docker.compose.project=${e2e.project}`,
    '--filter',
    'label=com.docker.compose.service=runner',
  )
}

/** The runner container's address on the egress network. */
export async function runnerAddress(): Promise<string> {
  const id = await runnerContainer()
  return docker(
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "isorun-egress").IPAddress}}',
    id,
  )
}

/** The stand-in's request log (one JSON line per request). */
export async function standinRequests(): Promise<{ host: string; method: string; url: string }[]> {
  const { stdout } = await run('docker', ['logs', e2e.standinName])
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{"host"'))
    .map((l) => JSON.parse(l) as { host: string; method: string; url: string })
}

/** JSON decision lines from a proxy container's log. */
export async function proxyLogLines(sandbox: Sandbox): Promise<Record<string, unknown>[]> {
  const { stdout } = await run('docker', ['logs', proxyContainer(sandbox)])
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

export async function compose(...args: string[]): Promise<void> {
  await run(e2e.compose[0] as string, [...e2e.compose.slice(1), ...args], {
    env: { ...process.env, ...e2e.composeEnv },
  })
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

/** Waits until Docker reports the runner container healthy (after a restart, say). */
export async function runnerHealthy(): Promise<void> {
  const id = await docker(
    'ps',
    '-q',
    '--filter',
    `label=com.docker.compose.project=${e2e.project}`,
    '--filter',
    'label=com.docker.compose.service=runner',
  )
  await waitFor(
    'a healthy runner',
    async () =>
      (await docker('inspect', '-f', '{{.State.Health.Status}}', id)) === 'healthy'
        ? true
        : undefined,
    90_000,
  )
}
