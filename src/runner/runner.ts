// Starts the runner: the profile catalogue (watched), the Docker backend
// (recovering sandboxes from labels), the timeout sweeper and the HTTP API.

import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { ProfileCatalogue } from '../profiles/index.js'
import { createApiServer } from './api.js'
import { ApprovalBroker } from './approvals-broker.js'
import type { RunnerConfig } from './config.js'
import { Docker, dockerMessage } from './docker.js'
import { SandboxManager } from './sandboxes.js'

/** How long requests in flight may run on after the runner is told to stop. */
const SHUTDOWN_GRACE_MS = 5_000

export interface RunningRunner {
  readonly address: AddressInfo
  readonly sandboxes: SandboxManager
  readonly catalogue: ProfileCatalogue
  close(): Promise<void>
}

/** JSON lines like the proxy's: level names and ISO times, for people reading `docker compose logs`. */
function defaultLogger(): pino.Logger {
  return pino({
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  })
}

export async function startRunner(
  config: RunnerConfig,
  logger = defaultLogger(),
): Promise<RunningRunner> {
  const docker = new Docker()
  try {
    await docker.ping()
  } catch (err) {
    throw new Error(
      `cannot reach the Docker engine (${dockerMessage(err)}); is /var/run/docker.sock mounted, or DOCKER_HOST set?`,
    )
  }
  const catalogue = new ProfileCatalogue({ dirs: config.profileDirs })
  for (const problem of catalogue.problems())
    logger.warn({ file: problem.file, keptLastGood: problem.keptLastGood }, problem.message)
  const sandboxes = new SandboxManager(docker, config, catalogue, logger)
  await sandboxes.ensureEgressNetwork()
  const recovered = await sandboxes.recover()
  logger.info(recovered, 'recovered sandboxes from Docker labels')

  catalogue.watch()
  catalogue.on('change', ({ changed, removed }) => {
    logger.info({ changed, removed }, 'profiles changed')
    for (const problem of catalogue.problems())
      logger.warn({ file: problem.file, keptLastGood: problem.keptLastGood }, problem.message)
    void sandboxes.applyCatalogueChange(changed)
  })
  sandboxes.startSweeper()
  sandboxes.watchDocker()
  const broker = new ApprovalBroker({
    proxies: () => sandboxes.proxies(),
    log: logger,
    ...(config.approvalWebhook ? { webhook: config.approvalWebhook } : {}),
  })
  broker.start()

  const server = createApiServer(config, catalogue, sandboxes, logger, broker)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.listen.port, config.listen.host, () => resolve())
  })
  const address = server.address() as AddressInfo
  logger.info(
    {
      listen: `${address.address}:${address.port}`,
      profiles: catalogue.names().length,
      auth: config.apiKeySource,
    },
    'runner started',
  )
  return {
    address,
    sandboxes,
    catalogue,
    close: async () => {
      broker.stop()
      sandboxes.stop()
      catalogue.close()
      // Stop listening and drop idle keep-alive connections at once. Requests in flight (a
      // streamed process, a file transfer) get a short grace, then are cut: waiting for a
      // stream that never ends would keep the runner from stopping at all.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      const cut = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS)
      await closed
      clearTimeout(cut)
    },
  }
}
