// Small loopback plumbing shared by the fuzz targets that use real sockets.

import net from 'node:net'
import { PropertyViolation } from './property.js'

/** A TCP server on 127.0.0.1 whose connections go to `onConnection`; resolves once listening. */
export function listenLoopback(onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer(onConnection)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

export function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port
}

/** Everything a socket receives until it closes; never rejects (an error ends it too). */
export function readUntilClosed(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  return new Promise((resolve) => {
    socket.once('close', () => resolve(Buffer.concat(chunks)))
    socket.on('error', () => undefined)
  })
}

/** Writes `bytes` in the pieces `cuts` marks (offsets), then half-closes. */
export function writeInPieces(socket: net.Socket, bytes: Buffer, cuts: readonly number[]): void {
  let start = 0
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    if (cut <= start || cut >= bytes.length) continue
    socket.write(bytes.subarray(start, cut))
    start = cut
  }
  socket.end(bytes.subarray(start))
}

/** Only a safety net for targets on real sockets: each wait normally ends in milliseconds. */
export const SAFETY_TIMEOUT_MS = 20_000

/** `promise`, or a PropertyViolation saying `what` if it has not settled in SAFETY_TIMEOUT_MS. */
export async function within<T>(what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PropertyViolation(`${what} within ${SAFETY_TIMEOUT_MS} ms`)),
      SAFETY_TIMEOUT_MS,
    )
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
