// The hold stage for a raw client socket (a tunnel waiting for an approval).
// Nothing is dialled while it waits, and what the client sends meanwhile is
// read into memory, never relayed: it goes back on the socket when the hold
// ends, so the stages after it see it as if it had just arrived, and it
// travels only if the answer lets the tunnel through.
//
// The socket is read while held so that a client that leaves is noticed at
// once: its hold ends (a deny, nothing dialled, nothing charged) and the
// approval stays pending for others. Past HELD_BYTES_MAX the socket is paused:
// a client cannot make the proxy buffer without bound, and one that leaves
// after that is noticed when the approval is answered or times out.

import type net from 'node:net'

/** Client bytes read while a connection is held, at most. */
export const HELD_BYTES_MAX = 64 * 1024

/**
 * Runs `wait` (the approval) while watching `socket`: the signal it gets aborts
 * when the client ends, closes or fails. Leaves the socket paused, with what it
 * sent meanwhile put back for the next reader.
 */
export async function holdClient<T>(
  socket: net.Socket,
  wait: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const gone = new AbortController()
  const chunks: Buffer[] = []
  let size = 0
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk)
    size += chunk.length
    if (size >= HELD_BYTES_MAX) socket.pause()
  }
  const onGone = (): void => gone.abort()
  socket.on('data', onData)
  socket.once('end', onGone)
  socket.once('close', onGone)
  socket.once('error', onGone)
  if (socket.destroyed || socket.readableEnded) gone.abort()
  else socket.resume()
  try {
    return await wait(gone.signal)
  } finally {
    socket.off('data', onData)
    socket.off('end', onGone)
    socket.off('close', onGone)
    socket.off('error', onGone)
    socket.pause()
    if (size > 0 && !socket.destroyed) socket.unshift(Buffer.concat(chunks, size))
  }
}
