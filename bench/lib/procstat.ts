// Reading a process's CPU time and memory from /proc (Linux only), for the
// proxy benchmark: CPU is the process's own utime+stime (all its threads) plus
// that of its live descendants (helpers such as squid's), RSS is VmRSS/VmHWM.

import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second for /proc/PID/stat; 100 on every Linux this runs on. */
const CLK_TCK = 100

interface Stat {
  readonly ppid: number
  /** utime + stime + cutime + cstime, in clock ticks. */
  readonly ticks: number
}

function readStat(pid: number): Stat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
  const n = (field: number): number => Number(fields[field - 3])
  return { ppid: n(4), ticks: n(14) + n(15) + n(16) + n(17) }
}

/** The pid and all its live descendants. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (!stat) continue
    const list = children.get(stat.ppid) ?? []
    list.push(Number(entry))
    children.set(stat.ppid, list)
  }
  const out: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    const p = queue.shift() as number
    out.push(p)
    queue.push(...(children.get(p) ?? []))
  }
  return out
}

/** CPU seconds used so far by the process and its live descendants. */
export function cpuSeconds(pid: number): number {
  let ticks = 0
  for (const p of processTree(pid)) ticks += readStat(p)?.ticks ?? 0
  return ticks / CLK_TCK
}

export interface Memory {
  /** Resident set size now, KiB. */
  readonly rssKiB: number
  /** Peak resident set size (high-water mark), KiB. */
  readonly hwmKiB: number
}

function memoryOf(pid: number): Memory | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1')
  } catch {
    return undefined
  }
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') }
}

/** Memory of the process and its live descendants, added up. */
export function memory(pid: number): Memory | undefined {
  const own = memoryOf(pid)
  if (!own) return undefined
  let { rssKiB, hwmKiB } = own
  for (const p of processTree(pid).slice(1)) {
    const m = memoryOf(p)
    rssKiB += m?.rssKiB ?? 0
    hwmKiB += m?.hwmKiB ?? 0
  }
  return { rssKiB, hwmKiB }
}

/**
 * Samples a process's RSS (with the descendants it had when sampling started)
 * every `intervalMs` and keeps the peak; VmHWM covers what sampling misses.
 */
export class RssSampler {
  private peakKiB = 0
  private readonly timer: NodeJS.Timeout
  private readonly pids: number[]

  constructor(pid: number, intervalMs = 100) {
    this.pids = processTree(pid) // once: walking /proc on every sample would cost the bench CPU
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
    this.timer.unref()
  }

  private read(): Memory {
    let rssKiB = 0
    let hwmKiB = 0
    for (const p of this.pids) {
      const m = memoryOf(p)
      rssKiB += m?.rssKiB ?? 0
      hwmKiB += m?.hwmKiB ?? 0
    }
    return { rssKiB, hwmKiB }
  }

  private sample(): void {
    const { rssKiB } = this.read()
    if (rssKiB > this.peakKiB) this.peakKiB = rssKiB
  }

  /** Stops sampling; the peak of the samples and of VmHWM, in KiB. */
  stop(): number {
    clearInterval(this.timer)
    const { rssKiB, hwmKiB } = this.read()
    return Math.max(this.peakKiB, rssKiB, hwmKiB)
  }
}
