// Small network helpers for the benchmark: loopback only.

import net from 'node:net'

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Waits until 127.0.0.1:port accepts; `gone` says why to stop early (the server died). */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  gone: () => string | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await tryConnect(port)) return
    const why = gone()
    if (why) throw new Error(why)
    if (Date.now() > deadline) throw new Error(`nothing accepted on 127.0.0.1:${port} in time`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
