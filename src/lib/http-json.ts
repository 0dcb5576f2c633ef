// Small helpers for the JSON HTTP APIs (the proxy's admin API and the runner):
// bounded body reading, JSON replies, `{ error: { code, message } }` errors,
// and bearer-token checks in constant time.

import { timingSafeEqual } from 'node:crypto'
import type http from 'node:http'

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  })
  res.end(text)
}

export function sendError(res: http.ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message } })
}

/** Reads a JSON body of at most `limit` bytes; a missing body reads as `{}`. */
export async function readJson(
  req: http.IncomingMessage,
  limit = 4 * 1024 * 1024,
): Promise<unknown> {
  const type = req.headers['content-type'] ?? ''
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit)
      throw new HttpError(413, 'body-too-large', `request body exceeds ${limit} bytes`)
    chunks.push(chunk)
  }
  if (size === 0) return {}
  if (!/^application\/json\b/i.test(type))
    throw new HttpError(415, 'unsupported-media-type', 'send the body as application/json')
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch (err) {
    // V8's message quotes a piece of the body, which may hold a secret: give the position only.
    const position = /position (\d+)/.exec((err as Error).message)?.[1]
    throw new HttpError(
      400,
      'invalid-json',
      `request body is not valid JSON${position ? ` (at byte ${position})` : ''}`,
    )
  }
}

/** True when the request carries `Authorization: Bearer <token>`. */
export function hasBearer(req: http.IncomingMessage, token: string): boolean {
  const header = req.headers.authorization ?? ''
  const m = /^Bearer\s+(\S+)$/i.exec(header)
  if (!m) return false
  const given = Buffer.from(m[1] as string)
  const expected = Buffer.from(token)
  return given.length === expected.length && timingSafeEqual(given, expected)
}

export function queryParams(req: http.IncomingMessage): URLSearchParams {
  return new URL(req.url ?? '/', 'http://localhost').searchParams
}

/** `limit` query parameter: a positive integer up to `max`, or the default. */
export function limitParam(params: URLSearchParams, fallback: number, max: number): number {
  const raw = params.get('limit')
  if (raw === null) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new HttpError(400, 'invalid-limit', `limit must be an integer from 1 to ${max}`)
  return n
}
