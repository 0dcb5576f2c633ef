// Squid as the reference proxy for bench/proxy.ts: found (or installed with
// bench/squid/setup.sh), configured from bench/squid/squid.conf.template into a
// temp dir, started in the foreground on a loopback port, stopped at the end.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitForPort } from './net.js'

/** bench/squid in the source tree (this file runs from dist/bench/lib). */
export const SQUID_DIR = fileURLToPath(new URL('../../../bench/squid/', import.meta.url))

function squidHasOpenssl(): boolean {
  const v = spawnSync('squid', ['-v'], { encoding: 'utf8' })
  return v.status === 0 && v.stdout.includes('--with-openssl')
}

/**
 * Makes sure squid (built with OpenSSL) and wrk are there, installing them when
 * we can. Returns why squid cannot be used, or undefined when it can.
 */
export function ensureSquid(): string | undefined {
  if (squidHasOpenssl() && spawnSync('wrk', ['-v']).error === undefined) return undefined
  process.stderr.write('bench: installing squid-openssl / wrk (bench/squid/setup.sh)…\n')
  const setup = spawnSync('bash', [join(SQUID_DIR, 'setup.sh')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  })
  if (squidHasOpenssl()) return undefined
  if (setup.status === 0)
    return 'squid-openssl looks installed, but no `squid` with OpenSSL support is on PATH'
  const why = (setup.stderr ?? '').trim().split('\n').slice(-3).join(' ')
  return `squid-openssl is not installed and could not be installed${why ? `: ${why}` : ''}`
}

export interface SquidOptions {
  readonly dir: string
  readonly port: number
  /** Allowed names (dstdomain syntax). */
  readonly names: readonly string[]
  /** name → address, written to squid's own hosts_file. */
  readonly hosts: ReadonlyMap<string, string>
  readonly caCert: string
  readonly caKey: string
  /** squid's access_log value; `none` turns it off. */
  readonly accessLog?: string
  /** The DNS server squid asks (port 53); by default one that does not exist. */
  readonly dnsServer?: string
}

export interface RunningSquid {
  readonly pid: number
  readonly conf: string
  stop(): Promise<void>
}

export function writeSquidConf(o: SquidOptions): string {
  mkdirSync(o.dir, { recursive: true })
  // squid started as root drops to its own user (proxy): it must write here and read the CA
  // (the caller makes the parent directories traversable).
  chmodSync(o.dir, 0o777)
  for (const file of [o.caCert, o.caKey]) chmodSync(file, 0o644)
  writeFileSync(
    join(o.dir, 'hosts'),
    [...o.hosts].map(([name, address]) => `${address} ${name}\n`).join(''),
  )
  const values: Record<string, string> = {
    PORT: String(o.port),
    DIR: o.dir,
    CA_CERT: o.caCert,
    CA_KEY: o.caKey,
    NAMES: o.names.join(' '),
    ACCESS_LOG: o.accessLog ?? 'stdio:/dev/null',
    DNS: o.dnsServer ?? '127.0.0.1',
  }
  const template = readFileSync(join(SQUID_DIR, 'squid.conf.template'), 'utf8')
  const conf = template.replace(/\{\{([A-Z_]+)\}\}/g, (_, key: string) => {
    const value = values[key]
    if (value === undefined) throw new Error(`squid.conf.template: unknown placeholder ${key}`)
    return value
  })
  const path = join(o.dir, 'squid.conf')
  writeFileSync(path, conf)
  return path
}

function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

export async function startSquid(o: SquidOptions): Promise<RunningSquid> {
  const conf = writeSquidConf(o)
  const cacheLog = join(o.dir, 'cache.log')
  const child = spawn('squid', ['-N', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
  try {
    await waitForPort(o.port, 15_000, () =>
      child.exitCode !== null ? `squid exited with ${child.exitCode}` : undefined,
    )
  } catch (err) {
    await stopChild(child, 2000)
    const log = existsSync(cacheLog) ? readFileSync(cacheLog, 'utf8').slice(-2000) : ''
    throw new Error(`${(err as Error).message}\n${stderr.slice(-1000)}${log}`)
  }
  return { pid: child.pid as number, conf, stop: () => stopChild(child, 5000) }
}
