// Short helper scripts the runner runs inside a sandbox (stop a process
// group, list a directory, remove a path). They need nothing but /bin/sh and
// its built-ins (read, printf, test, kill), except where a caller says so.

import type { Duplex } from 'node:stream'
import type Docker from 'dockerode'
import { demultiplex } from './docker-stream.js'

export interface ShellResult {
  readonly exitCode: number
  readonly stdout: Buffer
  readonly stderr: string
}

/** More output than this is an error: these scripts print little, whatever the sandbox holds. */
const SCRIPT_OUTPUT_LIMIT = 64 * 1024 * 1024

/**
 * Runs `/bin/sh -c SCRIPT isorun ARGS…` in the container and waits for it.
 * Arguments are passed as positional parameters, never pasted into the script.
 */
export async function runShellScript(
  container: Docker.Container,
  script: string,
  args: readonly string[],
): Promise<ShellResult> {
  const exec = await container.exec({
    Cmd: ['/bin/sh', '-c', script, 'isorun', ...args],
    AttachStdout: true,
    AttachStderr: true,
    AttachStdin: false,
    Tty: false,
  })
  const stream = (await exec.start({ hijack: true, stdin: false })) as Duplex
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  let size = 0
  for await (const frame of demultiplex(stream)) {
    size += frame.data.length
    if (size > SCRIPT_OUTPUT_LIMIT) {
      stream.destroy()
      throw new Error(
        `a helper script in the sandbox printed more than ${SCRIPT_OUTPUT_LIMIT} bytes`,
      )
    }
    ;(frame.stream === 'stdout' ? stdout : stderr).push(frame.data)
  }
  return {
    exitCode: await execExitCode(exec),
    stdout: Buffer.concat(stdout),
    stderr: Buffer.concat(stderr).toString('utf8'),
  }
}

/**
 * The exit code of an exec whose output stream has ended. Docker records it a
 * moment after the stream closes, so this polls, backing off, for up to a minute.
 */
export async function execExitCode(exec: Docker.Exec): Promise<number> {
  let delay = 10
  const deadline = Date.now() + 60_000
  for (;;) {
    const info = await exec.inspect()
    if (!info.Running) return info.ExitCode ?? -1
    if (Date.now() > deadline) return -1
    await new Promise((r) => setTimeout(r, delay))
    delay = Math.min(delay * 2, 500)
  }
}
