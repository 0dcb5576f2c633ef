// API routes for files: raw bytes in and out, one file per request, and a JSON
// listing, so clients need no tar code (the SDKs walk directories themselves).
//
//   GET    /v1/sandboxes/:id/files?path=P              → the bytes (application/octet-stream)
//   PUT    /v1/sandboxes/:id/files?path=P[&mode=644]   raw body → { path, size }
//   DELETE /v1/sandboxes/:id/files?path=P              → { path, removed: true }
//   GET    /v1/sandboxes/:id/files/list?path=D         → { path, entries: FileEntry[] }
//   POST   /v1/sandboxes/:id/files/mkdir?path=D        → { path }
//
// Errors: 400 invalid-path, 404 not-found, 409 is-a-directory / not-a-directory
// / not-a-file, 413 too-large (ISORUN_MAX_FILE_BYTES), 501 missing-tool.

import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import type http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { queryParams, sendJson } from '../lib/http-json.js'
import { listDir, makeDir, readFile, removePath, sandboxPath, writeFile } from './files.js'
import { ID, writeChunk, type Route } from './route.js'
import { SandboxError, type SandboxManager } from './sandboxes.js'

export function fileRoutes(sandboxes: SandboxManager, maxFileBytes: number): Route[] {
  const files = new RegExp(`^/v1/sandboxes/${ID}/files$`)
  const pathOf = (req: http.IncomingMessage): string => sandboxPath(queryParams(req).get('path'))
  return [
    {
      method: 'GET',
      pattern: files,
      handler: async (req, res, [id]) => {
        const path = pathOf(req)
        const content = await readFile(sandboxes.container(id as string), path, maxFileBytes)
        res.writeHead(200, {
          'Content-Type': 'application/octet-stream',
          'Content-Length': String(content.size),
          'Cache-Control': 'no-store',
        })
        try {
          for await (const chunk of content.stream as AsyncIterable<Buffer>)
            if (!(await writeChunk(res, chunk))) break
        } finally {
          content.stream.destroy()
        }
        res.end()
      },
    },
    {
      method: 'PUT',
      pattern: files,
      handler: async (req, res, [id]) => {
        const path = pathOf(req)
        const mode = modeParam(queryParams(req).get('mode'))
        const container = sandboxes.container(id as string)
        const spool = await spoolBody(req, maxFileBytes)
        try {
          await writeFile(container, path, spool.file, spool.size, mode)
        } finally {
          await spool.remove()
        }
        sendJson(res, 200, { path, size: spool.size })
      },
    },
    {
      method: 'DELETE',
      pattern: files,
      handler: async (req, res, [id]) => {
        const path = pathOf(req)
        await removePath(sandboxes.container(id as string), path)
        sendJson(res, 200, { path, removed: true })
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/files/list$`),
      handler: async (req, res, [id]) => {
        const path = pathOf(req)
        sendJson(res, 200, {
          path,
          entries: await listDir(sandboxes.container(id as string), path),
        })
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/files/mkdir$`),
      handler: async (req, res, [id]) => {
        const path = pathOf(req)
        await makeDir(sandboxes.container(id as string), path)
        sendJson(res, 200, { path })
      },
    },
  ]
}

function modeParam(raw: string | null): number {
  if (raw === null) return 0o644
  if (!/^[0-7]{3,4}$/.test(raw) || Number.parseInt(raw, 8) > 0o777)
    throw new SandboxError(
      400,
      'invalid-mode',
      'mode must be octal permission bits, e.g. 644 or 755',
    )
  return Number.parseInt(raw, 8)
}

/**
 * Saves the request body to a temporary file, refusing more than `limit`
 * bytes: the tar the engine gets needs the size up front, and the engine gets
 * nothing unless the whole file arrived. A body over the limit is still read
 * to its end (and dropped) before the answer: closing on a client that is
 * still sending resets the connection, and the client would never see why.
 */
async function spoolBody(
  req: http.IncomingMessage,
  limit: number,
): Promise<{ file: string; size: number; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'isorun-upload-'))
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true })
  const file = join(dir, 'body')
  const out = createWriteStream(file, { mode: 0o600 })
  let size = 0
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > limit) {
        out.destroy()
        continue
      }
      if (!out.write(chunk)) await once(out, 'drain')
    }
    if (size > limit)
      throw new SandboxError(
        413,
        'too-large',
        `the file is larger than the runner's limit of ${limit} bytes (ISORUN_MAX_FILE_BYTES)`,
      )
    out.end()
    await once(out, 'close')
    return { file, size, remove }
  } catch (err) {
    out.destroy()
    await remove()
    throw err
  }
}
