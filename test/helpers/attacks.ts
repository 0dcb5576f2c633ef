// Small tools of the attack tests (test/integration/proxy/attack-*.test.ts):
// markers to look for at an origin, real ClientHellos to send by hand, and
// the check that no dial left loopback.

import net from 'node:net'
import tls from 'node:tls'
import { expect } from 'vitest'
import { dials } from './proxy.js'

let markers = 0

/** A request path no other test sends: if it shows up at an origin, that request got through. */
export function marker(name: string): string {
  return `/attack-${name}-${++markers}`
}

/** The first bytes a TLS client sends for `servername`: a real ClientHello from Node's TLS stack. */
export async function clientHello(servername: string): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const first = new Promise<Buffer>((resolve) =>
    server.once('connection', (socket) => socket.once('data', resolve)),
  )
  const client = tls.connect({ host: '127.0.0.1', port, servername })
  client.on('error', () => undefined)
  const hello = await first
  client.destroy()
  await new Promise((resolve) => server.close(resolve))
  return hello
}

/** Asserts that no dial since `before` (an index into dials()) was to anything but loopback. */
export function expectNoBlockedDial(before: number): void {
  expect(
    dials()
      .slice(before)
      .filter((d) => d.blocked),
  ).toEqual([])
}
