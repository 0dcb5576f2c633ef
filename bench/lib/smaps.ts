// A process's memory as the sidecar goals count it, from /proc (Linux only):
// resident set (VmRSS) split into anonymous and file-backed pages, and private
// memory: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup, the pages
// no other process maps (its heap, stacks, and file pages only it has touched;
// the node binary's pages that other node processes also map are not in it).

import { readFileSync } from 'node:fs'

export interface MemoryDetail {
  readonly rssKiB: number
  readonly anonKiB: number
  readonly fileKiB: number
  readonly privateKiB: number
}

function field(text: string, key: string): number {
  return Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN)
}

/** The process's memory now, or undefined when it is gone. */
export function memoryDetail(pid: number): MemoryDetail | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1')
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1')
    return {
      rssKiB: field(status, 'VmRSS'),
      anonKiB: field(status, 'RssAnon'),
      fileKiB: field(status, 'RssFile'),
      privateKiB: field(rollup, 'Private_Clean') + field(rollup, 'Private_Dirty'),
    }
  } catch {
    return undefined
  }
}

/** Private_Clean + Private_Dirty from text holding those smaps_rollup lines. */
export function privateKiBOf(text: string): number {
  return field(text, 'Private_Clean') + field(text, 'Private_Dirty')
}
