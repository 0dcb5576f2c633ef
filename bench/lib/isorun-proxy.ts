// `isorun proxy` as a child process on loopback, for the benchmarks: its CPU,
// memory and file descriptors are then its own, read from /proc by its pid.

import { spawn } from 'node:child_process'
import { BUILT_CLI } from './host-runner.js'
import { freePort, waitForPort } from './net.js'

const LOOPBACK = '127.0.0.1'

export interface RunningProxy {
  readonly pid: number
  /** The HTTP proxy listener (absolute-form and CONNECT). */
  readonly port: number
  /** The other listeners asked for. */
  readonly socksPort?: number
  readonly tlsPort?: number
  readonly adminPort?: number
  stop(): Promise<void>
}

/** Proxy arguments that allow `name` on every port and map it to loopback (the local upstreams). */
export function allowOnLoopback(name: string): string[] {
  return ['--allow', `${name}:*`, '--resolve', `${name}=${LOOPBACK}`, '--allow-private', 'loopback']
}

export interface ProxyProcessOptions {
  /** Flags for node itself, before the script. */
  readonly nodeFlags?: readonly string[]
  /** Another build's cli/main.js (A/B comparisons); the built one by default. */
  readonly cli?: string
  /** Also listen for SOCKS5, transparent TLS, or the admin API (with this token). */
  readonly socks?: boolean
  readonly tls?: boolean
  readonly adminToken?: string
}

/**
 * Starts `isorun proxy ARGS` with an HTTP listener on a free loopback port (and the other
 * listeners asked for), and waits until it accepts. The decision log (stdout) is discarded.
 */
export async function startIsorunProxy(
  args: readonly string[],
  options: ProxyProcessOptions = {},
): Promise<RunningProxy> {
  const port = await freePort()
  const socksPort = options.socks ? await freePort() : undefined
  const tlsPort = options.tls ? await freePort() : undefined
  const adminPort = options.adminToken ? await freePort() : undefined
  const listeners = [
    '--http',
    `${LOOPBACK}:${port}`,
    ...(socksPort ? ['--socks', `${LOOPBACK}:${socksPort}`] : []),
    ...(tlsPort ? ['--tls', `${LOOPBACK}:${tlsPort}`] : []),
    ...(adminPort ? ['--admin', `${LOOPBACK}:${adminPort}`] : []),
  ]
  const child = spawn(
    process.execPath,
    [...(options.nodeFlags ?? []), options.cli ?? BUILT_CLI, 'proxy', ...listeners, ...args],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        ...(options.adminToken ? { ISORUN_ADMIN_TOKEN: options.adminToken } : {}),
      },
    },
  )
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  await waitForPort(port, 15_000, () =>
    child.exitCode !== null ? `isorun proxy exited with ${child.exitCode}: ${stderr}` : undefined,
  )
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  return {
    pid: child.pid as number,
    port,
    ...(socksPort ? { socksPort } : {}),
    ...(tlsPort ? { tlsPort } : {}),
    ...(adminPort ? { adminPort } : {}),
    stop: async () => {
      if (child.exitCode !== null) return
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      child.kill('SIGTERM')
      await exited
      clearTimeout(timer)
    },
  }
}
