// Commands running in sandboxes: output streamed as it arrives, stdin written
// while they run, and a stop that really stops them.
//
// The Docker Engine API cannot signal an exec. So every command starts under a
// small /bin/sh launcher that prints its process id and process group, then
// execs the command in place (same pid). runc makes every exec a session and
// process-group leader, so the command and what it starts share that group.
// To stop it, another exec runs a /bin/sh script that signals the group and
// every descendant of the command (found through /proc parent links, so a
// child that left for its own group or session is still found while its
// parent lives). What is relied on in the image: /bin/sh with the built-ins
// read, printf, kill and test, and /proc (always mounted by Docker).

import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type Docker from 'dockerode'
import type { SignalName } from 'isorun'
import { execExitCode, runShellScript } from './container-shell.js'
import { demultiplex, type OutputFrame } from './docker-stream.js'
import { dockerMessage, isNotFound } from './docker.js'
import { SandboxError } from './sandboxes.js'

/** Prints `isorun-pid PID PGID` on stdout, then becomes the command. */
const LAUNCHER = `g=0
if { read -r s < /proc/$$/stat; } 2>/dev/null; then s=\${s##*) }; s=\${s#* }; s=\${s#* }; g=\${s%% *}; fi
printf 'isorun-pid %s %s\\n' "$$" "$g"
exec "$@"`

/**
 * \`stop SIGNAL PID GROUP ROUNDS\`: signals PID, every process in GROUP (0: none)
 * and every descendant of those. With ROUNDS > 1 it looks again after each
 * round, for children forked meanwhile, until nothing is left.
 */
const STOP = `sig=$1 root=$2 group=$3 rounds=$4 n=0
while [ "$n" -lt "$rounds" ]; do
  n=$((n + 1)) targets=" $root " more=1
  while [ -n "$more" ]; do
    more=
    for f in /proc/[0-9]*/stat; do
      { read -r s < "$f"; } 2>/dev/null || continue
      p=\${f#/proc/} p=\${p%/stat}
      case $targets in *" $p "*) continue ;; esac
      set -- \${s##*) }
      [ "$1" = Z ] && continue
      if case $targets in *" $2 "*) true ;; *) [ "$group" != 0 ] && [ "$3" = "$group" ] ;; esac; then
        targets="$targets$p " more=1
      fi
    done
  done
  live=
  for p in $targets; do
    { read -r s < "/proc/$p/stat"; } 2>/dev/null || continue
    set -- \${s##*) }
    [ "$1" = Z ] || live="$live $p"
  done
  [ -n "$live" ] || exit 0
  kill -s "$sig" $live 2>/dev/null
done
exit 0`

export const SIGNALS: readonly SignalName[] = [
  'SIGTERM',
  'SIGKILL',
  'SIGINT',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR1',
  'SIGUSR2',
]

/** How long a process whose client went away keeps running before it is killed. */
export const CLIENT_GONE_GRACE_MS = 5_000
/** Exit code reported for a command stopped by its timeout (as timeout(1) does). */
const TIMED_OUT_EXIT_CODE = 124

export interface StartRequest {
  readonly cmd: readonly string[]
  readonly env?: readonly string[]
  readonly cwd?: string
  readonly timeoutMs: number
  readonly stdin: boolean
}

export type ProcessEvent =
  | OutputFrame
  | { readonly type: 'exit'; readonly exitCode: number; readonly timedOut: boolean }
  | { readonly type: 'error'; readonly code: string; readonly message: string }

interface Logger {
  warn(obj: object, msg: string): void
}

/** One running command. Its events are read once, by the request that started it. */
export class SandboxProcess {
  readonly id = randomBytes(8).toString('hex')
  private exited = false
  private timedOut = false
  private stdinOpen: boolean
  private readonly timeout: NodeJS.Timeout
  private abandonTimer: NodeJS.Timeout | undefined

  constructor(
    readonly sandboxId: string,
    /** The command's pid inside the sandbox. */
    readonly pid: number,
    /** Its process group, or 0 when it does not lead one of its own. */
    private readonly group: number,
    private readonly container: Docker.Container,
    private readonly exec: Docker.Exec,
    private readonly socket: Duplex,
    private readonly frames: AsyncGenerator<OutputFrame>,
    private readonly early: readonly OutputFrame[],
    request: StartRequest,
    private readonly log: Logger,
    private readonly onDone: () => void,
  ) {
    this.stdinOpen = request.stdin
    this.timeout = setTimeout(() => {
      this.timedOut = true
      void this.stopForGood('timeout')
    }, request.timeoutMs)
  }

  /** stdout/stderr frames as they come, then one `exit` (or `error`) event. Pulling slowly slows the command. */
  async *events(): AsyncGenerator<ProcessEvent> {
    let ended = false
    try {
      yield* this.early
      try {
        for await (const frame of this.frames) yield frame
      } catch {
        // The connection to the engine broke (e.g. the sandbox was removed): the exit code says more.
      }
      ended = true
      yield await this.exitEvent()
    } finally {
      // Whoever read the events stopped before the command ended: nobody will see its output.
      if (!ended) void this.stopForGood('events abandoned', true)
      this.finish()
    }
  }

  private async exitEvent(): Promise<ProcessEvent> {
    try {
      const exitCode = await execExitCode(this.exec)
      return this.timedOut
        ? { type: 'exit', exitCode: TIMED_OUT_EXIT_CODE, timedOut: true }
        : { type: 'exit', exitCode, timedOut: false }
    } catch (err) {
      return isNotFound(err)
        ? {
            type: 'error',
            code: 'sandbox-stopped',
            message: `sandbox ${this.sandboxId} was destroyed or stopped while the command ran`,
          }
        : { type: 'error', code: 'exec-failed', message: dockerMessage(err) }
    }
  }

  private finish(): void {
    if (this.exited) return
    this.exited = true
    clearTimeout(this.timeout)
    clearTimeout(this.abandonTimer)
    this.socket.destroy()
    this.onDone()
  }

  /** Writes to the command's stdin, waiting while its pipe is full. */
  async write(data: Buffer): Promise<void> {
    this.requireStdin()
    if (data.length === 0) return
    try {
      if (this.exited || this.socket.destroyed) throw new Error('gone')
      if (!this.socket.write(data)) await waitForDrain(this.socket)
    } catch {
      throw new SandboxError(409, 'process-exited', `process ${this.id} has exited`)
    }
  }

  /** Closes the command's stdin: it reads end-of-file. */
  endStdin(): void {
    this.requireStdin()
    this.stdinOpen = false
    this.socket.end()
  }

  private requireStdin(): void {
    if (!this.stdinOpen)
      throw new SandboxError(
        409,
        'stdin-closed',
        `the stdin of process ${this.id} is not open: spawn with stdin: true, and write before end()`,
      )
  }

  /** Sends a signal to the command, its process group and its descendants. */
  async signal(signal: SignalName): Promise<void> {
    if (!this.exited) await this.sendSignal(signal)
  }

  private async sendSignal(signal: SignalName): Promise<void> {
    const rounds = signal === 'SIGKILL' ? '10' : '1'
    const result = await runShellScript(this.container, STOP, [
      signal.slice(3),
      String(this.pid),
      String(this.group),
      rounds,
    ])
    if (result.exitCode !== 0)
      throw new SandboxError(
        500,
        'kill-failed',
        `stopping process ${this.id} in sandbox ${this.sandboxId} failed (exit ${result.exitCode}): ${result.stderr.trim()}`,
      )
  }

  /**
   * The client that started the command is gone: unless it ends by itself,
   * kill it after a grace period. Its output is discarded meanwhile, so it
   * does not block on a full pipe.
   */
  abandon(): void {
    if (this.exited || this.abandonTimer) return
    this.abandonTimer = setTimeout(() => void this.stopForGood('client gone'), CLIENT_GONE_GRACE_MS)
  }

  /** SIGKILL, retried a few times: the stop exec itself can fail while the sandbox is at its pids limit. */
  private async stopForGood(why: string, evenIfEnded = false): Promise<void> {
    for (let attempt = 1; evenIfEnded || !this.exited; attempt++) {
      try {
        await this.sendSignal('SIGKILL')
        return
      } catch (err) {
        if (attempt >= 5) {
          this.log.warn(
            { sandbox: this.sandboxId, process: this.id, why, err: dockerMessage(err) },
            'could not stop a process',
          )
          return
        }
        await new Promise((r) => setTimeout(r, 1000 * attempt))
      }
    }
  }
}

function waitForDrain(stream: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      stream.off('drain', done)
      stream.off('close', closed)
      stream.off('error', done)
      if (err) reject(err)
      else resolve()
    }
    const closed = (): void => done(new Error('the process ended'))
    stream.on('drain', done)
    stream.on('close', closed)
    stream.on('error', done)
  })
}

/** The processes the runner is running, by id. */
export class ProcessTable {
  private readonly running = new Map<string, SandboxProcess>()

  constructor(private readonly log: Logger) {}

  /**
   * Starts a command and waits until the launcher reports its pid, so it can
   * be stopped from then on. A command that cannot start is a SandboxError.
   */
  async start(
    sandboxId: string,
    container: Docker.Container,
    request: StartRequest,
  ): Promise<SandboxProcess> {
    let exec: Docker.Exec
    let socket: Duplex
    try {
      exec = await container.exec({
        Cmd: ['/bin/sh', '-c', LAUNCHER, 'isorun-exec', ...request.cmd],
        AttachStdin: request.stdin,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
        ...(request.env ? { Env: [...request.env] } : {}),
        ...(request.cwd ? { WorkingDir: request.cwd } : {}),
      })
      socket = (await exec.start({ hijack: true, stdin: request.stdin })) as Duplex
      // Errors surface through reading and writing; an unheard 'error' event would crash the runner.
      socket.on('error', () => undefined)
    } catch (err) {
      throw notRunning(err, sandboxId)
    }
    const frames = demultiplex(socket)
    const early: OutputFrame[] = []
    const header = await readLauncherHeader(frames, early)
    if (!header) {
      socket.destroy()
      throw startFailed(sandboxId, request, early)
    }
    const started = new SandboxProcess(
      sandboxId,
      header.pid,
      header.group === header.pid ? header.pid : 0,
      container,
      exec,
      socket,
      frames,
      early,
      request,
      this.log,
      () => this.running.delete(started.id),
    )
    this.running.set(started.id, started)
    return started
  }

  get(sandboxId: string, id: string): SandboxProcess {
    const found = this.running.get(id)
    if (!found || found.sandboxId !== sandboxId)
      throw new SandboxError(
        404,
        'process-not-found',
        `no running process "${id}" in sandbox ${sandboxId}; it may have exited`,
      )
    return found
  }
}

/**
 * Reads stdout up to the launcher's first line. Output that comes before it
 * (stderr) or after it in the same frame is kept in `early`.
 */
async function readLauncherHeader(
  frames: AsyncGenerator<OutputFrame>,
  early: OutputFrame[],
): Promise<{ pid: number; group: number } | undefined> {
  let line = Buffer.alloc(0)
  for (;;) {
    const next = await frames.next().catch(() => ({ done: true as const, value: undefined }))
    if (next.done) {
      if (line.length > 0) early.push({ stream: 'stdout', data: line })
      return undefined
    }
    const frame = next.value
    if (frame.stream === 'stderr') {
      early.push(frame)
      continue
    }
    line = Buffer.concat([line, frame.data])
    const end = line.indexOf(10)
    if (end < 0) {
      if (line.length <= 64) continue
      early.push({ stream: 'stdout', data: line })
      return undefined
    }
    const m = /^isorun-pid (\d+) (\d+)$/.exec(line.subarray(0, end).toString('latin1'))
    if (!m) {
      // Not our launcher speaking: the engine's own error (it writes those to stdout).
      early.push({ stream: 'stdout', data: line })
      return undefined
    }
    const rest = line.subarray(end + 1)
    if (rest.length > 0) early.push({ stream: 'stdout', data: rest })
    return { pid: Number(m[1]), group: Number(m[2]) }
  }
}

/** Why a command did not start, from what the engine (or the shell) said. */
function startFailed(
  sandboxId: string,
  request: StartRequest,
  said: readonly OutputFrame[],
): SandboxError {
  const text = said
    .map((f) => f.data.toString('utf8'))
    .join('')
    .trim()
  if (/chdir to cwd/.test(text))
    return new SandboxError(
      400,
      'invalid-cwd',
      `cwd ${request.cwd} is not a directory in sandbox ${sandboxId}`,
    )
  return new SandboxError(
    500,
    'start-failed',
    `the command could not start in sandbox ${sandboxId}${text ? `: ${text}` : ''} (isorun starts every command through /bin/sh, which the image must have)`,
  )
}

function notRunning(err: unknown, sandboxId: string): SandboxError {
  const message = dockerMessage(err)
  if (isNotFound(err) || /is not running|is paused|stopped/i.test(message))
    return new SandboxError(409, 'sandbox-not-running', `sandbox ${sandboxId} is not running`)
  return new SandboxError(500, 'exec-failed', `exec in sandbox ${sandboxId} failed: ${message}`)
}
