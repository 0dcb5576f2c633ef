// One route of the runner API: method, path pattern (capture groups become
// the handler's params) and handler.

import type http from 'node:http'

export type Handler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  params: string[],
) => Promise<void>

export interface Route {
  readonly method: string
  readonly pattern: RegExp
  readonly handler: Handler
}

/** A sandbox, process or profile id in a path. */
export const ID = '([A-Za-z0-9_.-]{1,64})'

/**
 * Writes a chunk of a streamed response, waiting while the client's buffer is
 * full. False when the client is gone (then stop producing).
 */
export async function writeChunk(
  res: http.ServerResponse,
  chunk: string | Buffer,
): Promise<boolean> {
  if (res.destroyed) return false
  if (res.write(chunk)) return true
  await new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
  return !res.destroyed
}
