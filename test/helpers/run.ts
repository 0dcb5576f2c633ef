// Async wrappers for the client programs the tests drive (curl, Debian's
// python3 with requests and PySocks, dig, the isorun CLI). Never use
// execFileSync/spawnSync here: an in-process proxy needs the event loop while
// the child talks to it, so a synchronous wait would deadlock.

import { execFile, spawn, type ChildProcess } from 'node:child_process'

export interface RunResult {
  /** Exit code; -1 when the process was killed or could not start. */
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** The environment without proxy variables, so nothing but the test's own flags steers a client. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const k of Object.keys(env)) if (/_proxy$/i.test(k)) delete env[k]
  return { ...env, ...extra }
}

export function run(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { env: opts.env ?? cleanEnv(), timeout: opts.timeoutMs ?? 15_000, maxBuffer: 8 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
        resolve({ code, stdout, stderr })
      },
    )
  })
}

/** curl without ~/.curlrc, proxy variables or a no-proxy list; errors on stderr; 10 s cap. */
export function curl(args: readonly string[]): Promise<RunResult> {
  return run('curl', ['-q', '-sS', '--noproxy', '', '-m', '10', ...args])
}

/** Exit code curl uses when the proxy refuses (CURLE_PROXY), e.g. a SOCKS reply 0x02. */
export const CURL_PROXY_ERROR = 97

/** Debian's python3 (not a pyenv one on PATH): it has python3-requests and python3-socks. */
export const PYTHON = '/usr/bin/python3'

const REQUESTS_SCRIPT = `
import json, sys
import requests
spec = json.loads(sys.argv[1])
s = requests.Session()
s.trust_env = False
try:
    r = s.request(spec.get('method', 'GET'), spec['url'], proxies=spec['proxies'],
                  verify=spec.get('verify', True), headers=spec.get('headers', {}), timeout=10,
                  allow_redirects=False)
    print(json.dumps({'ok': True, 'status': r.status_code, 'headers': dict(r.headers), 'body': r.text}))
except Exception as e:
    print(json.dumps({'ok': False, 'type': type(e).__name__, 'message': str(e)}))
`

export type PythonResult =
  | {
      readonly ok: true
      readonly status: number
      readonly headers: Record<string, string>
      readonly body: string
    }
  | { readonly ok: false; readonly type: string; readonly message: string }

/** One request with Python requests; `proxies` as requests takes them. */
export async function pythonRequest(spec: {
  url: string
  proxies: Record<string, string>
  verify?: string | boolean
  method?: string
  headers?: Record<string, string>
}): Promise<PythonResult> {
  const r = await run(PYTHON, ['-c', REQUESTS_SCRIPT, JSON.stringify(spec)])
  if (r.code !== 0) throw new Error(`python3 failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout) as PythonResult
}

export interface Spawned {
  readonly child: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves with the first match of `pattern` in stderr, waiting for it if needed. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** Resolves with the parsed JSON lines on stdout once `pred` holds for them. */
  waitForStdoutLines(
    pred: (lines: Record<string, unknown>[]) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>[]>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(signal?: NodeJS.Signals): void
}

export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** Starts a long-running child (the isorun CLI) without blocking the event loop. */
export function spawnProcess(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
): Spawned {
  const child = spawn(file, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  const notify = (): void => {
    for (const w of [...waiters]) w()
  }
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c
    notify()
  })
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    err += c
    notify()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      // Let the last output arrive before anyone looks at it.
      setImmediate(() => {
        resolve({ code, signal })
        notify()
      })
    }),
  )
  const waitUntil = <T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = probe()
        if (hit === undefined) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve(hit)
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${what}\nstdout:\n${out}\nstderr:\n${err}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitForStderr: (pattern, timeoutMs = 20_000) =>
      waitUntil(() => err.match(pattern) ?? undefined, timeoutMs, `${pattern} on stderr`),
    waitForStdoutLines: (pred, timeoutMs = 20_000) =>
      waitUntil(
        () => {
          const lines = jsonLines(out.slice(0, out.lastIndexOf('\n') + 1))
          return pred(lines) ? lines : undefined
        },
        timeoutMs,
        'stdout lines',
      ),
    exited,
    kill: (signal = 'SIGTERM') => void child.kill(signal),
  }
}
