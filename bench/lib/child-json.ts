// Benchmark helpers that run in a child process (load generators, latency
// clients), so that their CPU is never counted as the proxy's.

import { spawn } from 'node:child_process'

/** Runs `node script '<json arg>'` and parses the last line of its stdout. */
export function runChildJson<T>(script: string, arg: unknown): Promise<T> {
  return new Promise((resolveResult, reject) => {
    const child = spawn(process.execPath, [script, JSON.stringify(arg)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.once('error', reject)
    child.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? ''
      try {
        resolveResult(JSON.parse(line) as T)
      } catch {
        reject(new Error(`${script} exited with ${code}: ${out}`))
      }
    })
  })
}
