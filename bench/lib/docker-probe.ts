// Looking at sandboxes from outside the runner, through the Docker Engine API
// (dockerode, the runner's own dependency): the engine's event stream with
// nanosecond timestamps, container log lines with the engine's timestamps,
// container start times, and a sidecar's memory (the node process's VmRSS
// read inside the container, and the container's cgroup usage).
//
// All timestamps are milliseconds since the epoch (fractional), on the
// engine's clock, which is the host's clock when the engine runs here.

import type { Readable } from 'node:stream'
import type { Docker } from '../../src/runner/docker.js'
import { runShellScript } from '../../src/runner/container-shell.js'
import { privateKiBOf } from './smaps.js'

export interface EngineEvent {
  /** ms since the epoch, from timeNano. */
  readonly time: number
  readonly type: string
  /** create, start, connect, exec_create: /bin/sh -c true, ... */
  readonly action: string
  /** Actor.ID: a container or network id. */
  readonly id: string
  /** Container name, or network name for network events. */
  readonly name: string
  /** For network connect/disconnect: the container id. */
  readonly container: string | undefined
}

interface RawEvent {
  Type?: string
  Action?: string
  timeNano?: number
  Actor?: { ID?: string; Attributes?: Record<string, string> }
}

/** Records container and network events of the engine while it runs. */
export class EventRecorder {
  readonly events: EngineEvent[] = []
  private stream: Readable | undefined
  private rest = ''

  constructor(private readonly docker: Docker) {}

  async start(): Promise<void> {
    const stream = (await this.docker.getEvents({
      filters: { type: ['container', 'network'] },
    })) as unknown as Readable
    this.stream = stream
    stream.on('data', (chunk: Buffer) => {
      const text = this.rest + chunk.toString('utf8')
      const lines = text.split('\n')
      this.rest = lines.pop() ?? ''
      for (const line of lines) this.add(line)
    })
    stream.on('error', () => undefined)
  }

  private add(line: string): void {
    if (line.trim() === '') return
    let e: RawEvent
    try {
      e = JSON.parse(line) as RawEvent
    } catch {
      return
    }
    const attrs = e.Actor?.Attributes ?? {}
    this.events.push({
      time: Number(e.timeNano ?? 0) / 1e6,
      type: e.Type ?? '',
      action: e.Action ?? '',
      id: e.Actor?.ID ?? '',
      name: attrs.name ?? '',
      container: attrs.container,
    })
  }

  /** Waits until the engine has sent what it had to send up to `until` (events arrive a little late). */
  async settle(ms = 500): Promise<void> {
    await new Promise((r) => setTimeout(r, ms))
  }

  stop(): void {
    this.stream?.destroy()
  }
}

/** "2026-11-26T22:29:45.315635661Z" to ms since the epoch, keeping the sub-millisecond part. */
export function parseEngineTime(text: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text.trim())
  if (!m) return NaN
  const whole = Date.parse(`${m[1]}${m[3]}`)
  const frac = m[2] ? Number(`0.${m[2]}`) * 1000 : 0
  return whole + frac
}

export interface LogLine {
  readonly time: number
  readonly text: string
}

/** A container's log lines (stdout and stderr) with the engine's receive timestamps. */
export async function containerLogLines(docker: Docker, name: string): Promise<LogLine[]> {
  const raw = (await docker.getContainer(name).logs({
    stdout: true,
    stderr: true,
    timestamps: true,
    follow: false,
  })) as unknown as Buffer
  // Without a TTY the engine multiplexes: 8-byte header (stream, 0, 0, 0, size BE32), then the payload.
  let text = ''
  let at = 0
  const multiplexed = raw.length >= 8 && raw[0]! <= 2 && raw[1] === 0 && raw[2] === 0
  if (multiplexed) {
    while (at + 8 <= raw.length) {
      const size = raw.readUInt32BE(at + 4)
      text += raw.subarray(at + 8, at + 8 + size).toString('utf8')
      at += 8 + size
    }
  } else {
    text = raw.toString('utf8')
  }
  const lines: LogLine[] = []
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ')
    if (space <= 0) continue
    const time = parseEngineTime(line.slice(0, space))
    if (Number.isFinite(time)) lines.push({ time, text: line.slice(space + 1) })
  }
  return lines.sort((a, b) => a.time - b.time)
}

/** When the container's process was started (State.StartedAt), ms since the epoch. */
export async function startedAt(docker: Docker, name: string): Promise<number> {
  const info = await docker.getContainer(name).inspect()
  return parseEngineTime(info.State.StartedAt)
}

export interface SidecarMemory {
  /** VmRSS of the node process in the container, KiB. */
  readonly rssKiB: number
  /** VmHWM (peak RSS) of the node process, KiB. */
  readonly hwmKiB: number
  readonly anonKiB: number
  /** File-backed resident pages (mostly the node binary): page cache, shared by every sidecar of the image. */
  readonly fileKiB: number
  /** Proportional set size: file pages shared with other processes count by share (NaN if unreadable). */
  readonly pssKiB: number
  /** Private_Clean + Private_Dirty: the pages no other process maps (NaN if unreadable). */
  readonly privateKiB: number
  /** The container's cgroup memory as `docker stats` shows it (usage minus inactive file), KiB. */
  readonly cgroupKiB: number
}

// The sidecar runs docker-init as PID 1 and node as its child: find node by its comm.
const READ_NODE_STATUS =
  'for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = node ] || continue; ' +
  'echo "pid ${d#/proc/}"; grep -E "^(VmRSS|VmHWM|RssAnon|RssFile):" "$d/status"; ' +
  'grep -E "^(Pss|Pss_Anon|Pss_File|Private_Clean|Private_Dirty):" "$d/smaps_rollup" 2>/dev/null; done'

/** Memory of a sidecar: its node process (read inside the container) and its cgroup. */
export async function sidecarMemory(docker: Docker, name: string): Promise<SidecarMemory> {
  const container = docker.getContainer(name)
  const result = await runShellScript(container, READ_NODE_STATUS, [])
  const out = { ...result, stdout: result.stdout.toString('utf8') }
  const pids = out.stdout.match(/^pid /gm)?.length ?? 0
  if (out.exitCode !== 0 || pids !== 1)
    throw new Error(
      `reading the node process of ${name}: exit ${out.exitCode}, ${pids} node processes, ${out.stderr.trim()}`,
    )
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(out.stdout)?.[1] ?? NaN)
  const stats = (await container.stats({
    stream: false,
    'one-shot': true,
  } as never)) as unknown as {
    memory_stats?: { usage?: number; stats?: Record<string, number> }
  }
  const usage = stats.memory_stats?.usage ?? NaN
  const s = stats.memory_stats?.stats ?? {}
  // What the docker CLI shows: cgroup v1 total_inactive_file, v2 inactive_file.
  const inactive = s.total_inactive_file ?? s.inactive_file ?? 0
  return {
    rssKiB: kib('VmRSS'),
    hwmKiB: kib('VmHWM'),
    anonKiB: kib('RssAnon'),
    fileKiB: kib('RssFile'),
    pssKiB: kib('Pss'),
    privateKiB: privateKiBOf(out.stdout),
    cgroupKiB: (inactive < usage ? usage - inactive : usage) / 1024,
  }
}

/** Whether a container's /etc/hosts maps `name` (so resolving it never leaves the container). */
export async function hostsMaps(docker: Docker, container: string, name: string): Promise<string> {
  const out = await runShellScript(docker.getContainer(container), 'cat /etc/hosts', [])
  for (const line of out.stdout.toString('utf8').split('\n')) {
    const [address, ...names] = line.trim().split(/\s+/)
    if (address && !address.startsWith('#') && names.includes(name)) return address
  }
  return ''
}
