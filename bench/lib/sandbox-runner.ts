// The runner that `npm run bench:sandbox` starts as a child process (forked,
// with an IPC channel). It is `isorun runner` (same config, same
// SandboxManager, same HTTP API) with two differences that matter on a Docker
// host shared with other runners:
//
//   - no start-up recovery: `SandboxManager.recover()` adopts complete sandboxes
//     without a runner label (made by older runners, maybe another's still in
//     use) and removes incomplete ones of theirs after a minute. The bench must
//     not touch objects it did not create.
//   - on SIGTERM/SIGINT, or when the parent goes away (IPC disconnect), it waits
//     for creates in flight and destroys every sandbox it made, then exits.
//
// Settings come from ISORUN_* variables exactly as for `isorun runner`.
// Logs are pino JSON lines on stdout (the parent reads `sandbox created`).

import { rmSync } from 'node:fs'
import { basename } from 'node:path'
import pino from 'pino'
import type { CreateSandboxRequest, SandboxInfo } from 'isorun'
import { ProfileCatalogue } from '../../src/profiles/index.js'
import { createApiServer } from '../../src/runner/api.js'
import { loadRunnerConfig } from '../../src/runner/config.js'
import { Docker, dockerMessage } from '../../src/runner/docker.js'
import { SandboxManager, type PolicyRequest } from '../../src/runner/sandboxes.js'

/** SandboxManager that knows which creates are still running, so shutdown can wait for them. */
class TrackedManager extends SandboxManager {
  readonly inflight = new Set<Promise<unknown>>()

  override create(request: CreateSandboxRequest, policy: PolicyRequest): Promise<SandboxInfo> {
    const p = super.create(request, policy)
    const settled = p.catch(() => undefined)
    this.inflight.add(settled)
    void settled.then(() => this.inflight.delete(settled))
    return p
  }
}

async function main(): Promise<void> {
  const logger = pino({ base: undefined })
  const config = loadRunnerConfig()
  const docker = new Docker()
  await docker.ping()
  const catalogue = new ProfileCatalogue({ dirs: config.profileDirs })
  const sandboxes = new TrackedManager(docker, config, catalogue, logger)
  await sandboxes.ensureEgressNetwork()
  sandboxes.startSweeper()
  const server = createApiServer(config, catalogue, sandboxes)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.listen.port, config.listen.host, () => resolve())
  })
  logger.info({ listen: `${config.listen.host}:${config.listen.port}` }, 'runner started')
  process.send?.({ ready: true })

  let stopping = false
  const stop = async (why: string): Promise<void> => {
    if (stopping) return
    stopping = true
    server.close()
    const deadline = Date.now() + 60_000
    while (sandboxes.inflight.size > 0 && Date.now() < deadline)
      await Promise.race([...sandboxes.inflight, new Promise((r) => setTimeout(r, 1000))])
    const left = await sandboxes.list().catch(() => [])
    for (const s of left) {
      await sandboxes
        .destroy(s.id)
        .catch((err: unknown) =>
          logger.warn({ sandbox: s.id, error: dockerMessage(err) }, 'could not destroy'),
        )
    }
    logger.info({ why, destroyed: left.length }, 'runner stopped')
    // The bench removes its temporary state dir itself, unless it is gone.
    const dir = process.env.ISORUN_STATE_DIR ?? ''
    if (why === 'parent gone' && basename(dir).startsWith('isorun-bench-sandbox-'))
      rmSync(dir, { recursive: true, force: true })
    sandboxes.stop()
    server.closeAllConnections()
    process.exit(0)
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('disconnect', () => void stop('parent gone'))
}

main().catch((err: unknown) => {
  process.stderr.write(`bench runner: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
