// Starts a benchmark's upstream servers (bench/lib/upstream.ts for bench:proxy,
// bench/lib/soak-upstream.ts for bench:soak) as a child process, so that their
// CPU, memory and sockets are never counted as the proxy's. The child reports
// {httpPort, tlsPort} over IPC and exits when we disconnect.

import { fork } from 'node:child_process'

export interface Upstreams {
  readonly pid: number
  readonly httpPort: number
  readonly tlsPort: number
  stop(): void
}

export function startUpstreamProcess(
  script: string,
  cert: string,
  key: string,
): Promise<Upstreams> {
  return new Promise((resolvePorts, reject) => {
    const child = fork(script, [cert, key], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    child.once('error', reject)
    child.once('exit', (code) =>
      reject(new Error(`the upstream servers (${script}) exited with ${code}`)),
    )
    child.once('message', (m: { httpPort: number; tlsPort: number }) =>
      resolvePorts({ ...m, pid: child.pid as number, stop: () => child.disconnect() }),
    )
  })
}
