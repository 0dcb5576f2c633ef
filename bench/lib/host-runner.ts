// `isorun runner` (the built CLI, dist/src/cli/main.js) as a child process on
// this machine, for the soak benchmark and the end-to-end tests of runner
// faults: they kill it, restart it on the same state directory, and point it
// at a Docker socket they can cut. Its API listens on loopback; its own
// runner id (ISORUN_RUNNER_ID) marks what it creates, so a caller can find
// exactly its objects on a shared engine.

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, waitForPort } from './net.js'

/** The repository root: the nearest directory above this file with a package.json. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the repository root above bench/lib')
    dir = up
  }
  return dir
}

export const REPO_ROOT = repoRoot()
/** A safety net only: a runner exits within milliseconds of SIGTERM. */
const STOP_SAFETY_MS = 60_000
export const BUILT_CLI = join(REPO_ROOT, 'dist/src/cli/main.js')

export interface HostRunnerOptions {
  /** Kept across restarts: the runner's generated files live here. */
  readonly stateDir: string
  readonly runnerId: string
  /** More ISORUN_* settings (or DOCKER_HOST). */
  readonly env?: Record<string, string>
  /** Port to listen on; a free one when absent (pass the old one to restart in place). */
  readonly port?: number
}

export interface HostRunner {
  readonly url: string
  readonly apiKey: string
  readonly port: number
  readonly child: ChildProcess
  /** Everything the runner wrote (pino lines on stdout, messages on stderr). */
  output(): string
  /** Resolves with the exit code or signal once the process is gone. */
  readonly exited: Promise<number | NodeJS.Signals | null>
  /**
   * SIGTERM, and wait for the exit. A runner still there a minute later (something keeps
   * its event loop alive: a connection or a timer it never closes) is killed, and stop()
   * fails saying so.
   */
  stop(): Promise<void>
}

export async function startHostRunner(options: HostRunnerOptions): Promise<HostRunner> {
  if (!existsSync(BUILT_CLI)) throw new Error(`${BUILT_CLI} is missing: run npm run build first`)
  const port = options.port ?? (await freePort())
  const apiKey = randomBytes(24).toString('hex')
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ISORUN_LISTEN: `127.0.0.1:${port}`,
    ISORUN_API_KEY: apiKey,
    ISORUN_STATE_DIR: options.stateDir,
    ISORUN_RUNNER_ID: options.runnerId,
    ISORUN_PULL_IMAGES: 'false',
    ...options.env,
  }
  delete env.ISORUN_AUTH
  const child = spawn(process.execPath, [BUILT_CLI, 'runner'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  )
  // Recovery runs before the API listens: once it accepts, recovery is done.
  await waitForPort(port, 120_000, () =>
    child.exitCode !== null || child.signalCode !== null
      ? `isorun runner exited (${child.exitCode ?? child.signalCode}): ${output}`
      : undefined,
  )
  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    port,
    child,
    output: () => output,
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      let timer: NodeJS.Timeout | undefined
      const stuck = new Promise<'stuck'>((resolve) => {
        timer = setTimeout(() => resolve('stuck'), STOP_SAFETY_MS)
      })
      const outcome = await Promise.race([exited, stuck])
      clearTimeout(timer)
      if (outcome !== 'stuck') return
      child.kill('SIGKILL')
      await exited
      throw new Error(
        `isorun runner did not exit within ${STOP_SAFETY_MS / 1000} s of SIGTERM (an open connection or timer keeps it alive); killed it. Its output: ${output.slice(-2000)}`,
      )
    },
  }
}
