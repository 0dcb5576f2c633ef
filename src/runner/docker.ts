// Thin helpers over the Docker Engine API (dockerode): images, exec with
// demultiplexed output, and removal that tolerates "already gone".

import { PassThrough } from 'node:stream'
import Docker from 'dockerode'

export { Docker }

export class DockerError extends Error {
  constructor(
    message: string,
    readonly code: 'image-pull-failed' | 'docker-unavailable' | 'docker-error',
  ) {
    super(message)
  }
}

interface DockerApiError {
  statusCode?: number
  json?: { message?: string }
  message?: string
  code?: string
}

export function dockerMessage(err: unknown): string {
  const e = err as DockerApiError
  return e.json?.message ?? e.message ?? String(err)
}

export function isNotFound(err: unknown): boolean {
  return (err as DockerApiError).statusCode === 404
}

/** Makes sure an image is present, pulling it when allowed. Failures name the image and the reason. */
export async function ensureImage(docker: Docker, image: string, pull: boolean): Promise<void> {
  try {
    await docker.getImage(image).inspect()
    return
  } catch (err) {
    if (!isNotFound(err))
      throw new DockerError(`cannot inspect image ${image}: ${dockerMessage(err)}`, 'docker-error')
  }
  if (!pull)
    throw new DockerError(
      `image ${image} is not present and pulling is disabled (ISORUN_PULL_IMAGES=false)`,
      'image-pull-failed',
    )
  try {
    const stream = await docker.pull(image)
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, output: { error?: string }[]) => {
        const failed = err?.message ?? output?.find((o) => o.error)?.error
        if (failed) reject(new Error(failed))
        else resolve()
      })
    })
  } catch (err) {
    throw new DockerError(`cannot pull image ${image}: ${dockerMessage(err)}`, 'image-pull-failed')
  }
}

export interface ExecOutput {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
  readonly timedOut: boolean
  readonly truncated: boolean
}

/** Collects a stream into a string, keeping at most `limit` bytes. */
class BoundedText {
  private readonly chunks: Buffer[] = []
  private size = 0
  truncated = false
  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    const room = this.limit - this.size
    if (room <= 0) {
      this.truncated = true
      return
    }
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk
    if (kept.length < chunk.length) this.truncated = true
    this.chunks.push(kept)
    this.size += kept.length
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8')
  }
}

/**
 * Runs a command in a container and collects its output. After `timeoutMs` the
 * result is returned with `timedOut` (exit code 124); the Engine API cannot
 * kill an exec, so the sandbox's own limits and timeout bound what keeps running.
 */
export async function execInContainer(
  container: Docker.Container,
  options: { cmd: string[]; env?: string[]; cwd?: string; timeoutMs: number; outputLimit: number },
): Promise<ExecOutput> {
  const exec = await container.exec({
    Cmd: options.cmd,
    AttachStdout: true,
    AttachStderr: true,
    AttachStdin: false,
    Tty: false,
    ...(options.env ? { Env: options.env } : {}),
    ...(options.cwd ? { WorkingDir: options.cwd } : {}),
  })
  const stream = await exec.start({ hijack: true, stdin: false })
  const stdout = new BoundedText(options.outputLimit)
  const stderr = new BoundedText(options.outputLimit)
  const out = new PassThrough()
  const err = new PassThrough()
  out.on('data', (c: Buffer) => stdout.push(c))
  err.on('data', (c: Buffer) => stderr.push(c))
  container.modem.demuxStream(stream, out, err)
  const finished = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), options.timeoutMs)
    const done = (): void => {
      clearTimeout(timer)
      resolve(true)
    }
    stream.once('end', done)
    stream.once('close', done)
    stream.once('error', done)
  })
  if (!finished) {
    stream.destroy()
    return {
      exitCode: 124,
      stdout: stdout.text(),
      stderr: stderr.text(),
      timedOut: true,
      truncated: stdout.truncated || stderr.truncated,
    }
  }
  // The exit code is set a moment after the stream ends.
  let exitCode: number | null = null
  for (let i = 0; i < 50 && exitCode === null; i++) {
    const info = await exec.inspect()
    if (!info.Running) exitCode = info.ExitCode ?? -1
    else await new Promise((r) => setTimeout(r, 20))
  }
  return {
    exitCode: exitCode ?? -1,
    stdout: stdout.text(),
    stderr: stderr.text(),
    timedOut: false,
    truncated: stdout.truncated || stderr.truncated,
  }
}

export async function removeContainer(docker: Docker, idOrName: string): Promise<void> {
  try {
    await docker.getContainer(idOrName).remove({ force: true, v: true })
  } catch (err) {
    if (
      !isNotFound(err) &&
      !/removal of container .* is already in progress/i.test(dockerMessage(err))
    )
      throw err
  }
}

/** Runs a removal, retrying briefly while Docker says the object is busy; gone already is fine. */
async function removeRetrying(remove: () => Promise<unknown>, busy: RegExp): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await remove()
      return
    } catch (err) {
      if (isNotFound(err)) return
      if (attempt >= 20 || !busy.test(dockerMessage(err))) throw err
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

/** Removes a network; Docker refuses while a removed container is still detaching. */
export function removeNetwork(docker: Docker, idOrName: string): Promise<void> {
  return removeRetrying(() => docker.getNetwork(idOrName).remove(), /active endpoints/i)
}

/** Removes a volume; Docker refuses while a removed container still holds it. */
export function removeVolume(docker: Docker, name: string): Promise<void> {
  return removeRetrying(() => docker.getVolume(name).remove(), /in use/i)
}
