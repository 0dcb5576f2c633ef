// Running commands from the end-to-end set-up and tests (asynchronously: a
// synchronous child process would block vitest's event loop).

import { spawn } from 'node:child_process'

export interface RunResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export function run(
  command: string,
  args: readonly string[],
  options: {
    env?: NodeJS.ProcessEnv
    input?: string
    cwd?: string
    timeoutMs?: number
    check?: boolean
  } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10 * 60_000)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      const result = { code: code ?? -1, stdout, stderr }
      if (options.check !== false && result.code !== 0) {
        reject(
          new Error(
            `${command} ${args.join(' ')} exited ${result.code}\n${stderr.slice(-4000)}${stdout.slice(-2000)}`,
          ),
        )
      } else {
        resolve(result)
      }
    })
    // A command that exits before reading its input (docker inspect does) closes the pipe:
    // that is no failure of ours, and unhandled it would crash the whole run (EPIPE).
    child.stdin.on('error', () => undefined)
    child.stdin.end(options.input ?? '')
  })
}

/** `docker …`, failing with its output on a non-zero exit. */
export async function docker(...args: string[]): Promise<string> {
  return (await run('docker', args)).stdout.trim()
}

export async function dockerOk(...args: string[]): Promise<boolean> {
  return (await run('docker', args, { check: false })).code === 0
}

/** Streams a long step's output to the terminal with a prefix, so CI shows progress. */
export function runVisible(
  command: string,
  args: readonly string[],
  label: string,
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const relay = (d: Buffer): void => {
      for (const line of d.toString().split('\n'))
        if (line.trim()) process.stderr.write(`[e2e ${label}] ${line}\n`)
    }
    child.stdout.on('data', relay)
    child.stderr.on('data', relay)
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${label}: ${command} exited ${code}`)),
    )
  })
}

/**
 * Builds an image from Dockerfile lines, with files copied into the context
 * (context name → host path). The classic builder: it needs no BuildKit.
 */
export async function buildImage(
  tag: string,
  dockerfile: readonly string[],
  files: Readonly<Record<string, string>> = {},
): Promise<void> {
  const { copyFile, mkdtemp, rm, writeFile } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const ctx = await mkdtemp(join(tmpdir(), 'isorun-e2e-image-'))
  try {
    for (const [name, from] of Object.entries(files)) await copyFile(from, join(ctx, name))
    await writeFile(join(ctx, 'Dockerfile'), `${dockerfile.join('\n')}\n`)
    await run('docker', ['build', '-q', '-t', tag, ctx], {
      env: { ...process.env, DOCKER_BUILDKIT: '0' },
    })
  } finally {
    await rm(ctx, { recursive: true, force: true })
  }
}
