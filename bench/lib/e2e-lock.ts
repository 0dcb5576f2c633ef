// The lock that serialises everything that disturbs the shared Docker engine
// (end-to-end tests, Docker benchmarks): /tmp/isorun-e2e.lock, taken with
// flock(1) exactly as `flock /tmp/isorun-e2e.lock npm run test:e2e` does.
// A process whose ancestor already holds it (the bench run under flock)
// does not take it again, which would wait forever.

import { spawn } from 'node:child_process'
import { readFileSync, statSync, writeFileSync, existsSync } from 'node:fs'

export const E2E_LOCK = '/tmp/isorun-e2e.lock'

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch {
    return 0
  }
}

/** Pids holding a flock on the file, from /proc/locks. */
function holders(path: string): number[] {
  if (!existsSync(path)) return []
  const inode = statSync(path).ino
  return (
    readFileSync('/proc/locks', 'latin1')
      .split('\n')
      // Holders only: a line with "->" is a process waiting for the lock.
      .filter((l) => / FLOCK /.test(l) && !l.includes('->'))
      .flatMap((l) => {
        const f = l.trim().split(/\s+/)
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        const pid = Number(f[4])
        const ino = Number(f[5]?.split(':')[2])
        return ino === inode ? [pid] : []
      })
  )
}

function heldByAncestor(path: string): boolean {
  const owners = new Set(holders(path))
  for (let pid = process.pid; pid > 1; pid = parentOf(pid)) if (owners.has(pid)) return true
  return false
}

/**
 * Takes the lock (waiting for whoever holds it) and resolves with its release.
 * `waiting` is called once if the lock is busy.
 */
export async function takeE2eLock(waiting: (holders: number[]) => void): Promise<() => void> {
  if (heldByAncestor(E2E_LOCK)) return () => undefined
  if (!existsSync(E2E_LOCK)) writeFileSync(E2E_LOCK, '')
  const busy = holders(E2E_LOCK)
  if (busy.length > 0) waiting(busy)
  // flock holds the lock for as long as `cat` runs, i.e. until we close its stdin.
  const child = spawn('flock', [E2E_LOCK, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`flock ${E2E_LOCK} exited with ${code}`)))
    child.stdout.once('data', () => resolve())
  })
  child.removeAllListeners('exit')
  return () => child.stdin.end()
}
