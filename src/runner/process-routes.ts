// API routes for commands: a streamed process (NDJSON over one chunked
// response), its stdin and its signals, and the buffered exec built on it.
//
//   POST /v1/sandboxes/:id/processes                 { cmd, env?, cwd?, timeoutMs?, stdin? }
//        → 200 application/x-ndjson: start, stdout/stderr (base64), heartbeat, …, exit | error
//   POST /v1/sandboxes/:id/processes/:pid/stdin[?end=true]   raw bytes → { written }
//   POST /v1/sandboxes/:id/processes/:pid/kill       { signal? } (default SIGKILL)
//   POST /v1/sandboxes/:id/exec                      { cmd, env?, cwd?, timeoutMs? } → ExecResult
//
// A client that drops the stream (or the exec request) before the command ends
// leaves it running for a grace period only; then it is killed.

import type http from 'node:http'
import type { ExecRequest, ExecResult, ProcessStreamEvent } from 'isorun'
import { queryParams, readJson, sendJson } from '../lib/http-json.js'
import type { ProcessEvent, ProcessTable, SandboxProcess, StartRequest } from './processes.js'
import { ID, writeChunk, type Route } from './route.js'
import { SandboxError, type SandboxManager } from './sandboxes.js'
import { parseExecRequest, parseKillRequest, parseSpawnRequest } from './validate.js'

const DEFAULT_TIMEOUT_MS = 10 * 60_000
/** stdout and stderr of a buffered exec are each cut here (`truncated`). */
const EXEC_OUTPUT_LIMIT = 10 * 1024 * 1024
const HEARTBEAT_MS = 15_000

export function processRoutes(sandboxes: SandboxManager, processes: ProcessTable): Route[] {
  const start = (id: string, request: ExecRequest & { stdin?: boolean }) =>
    processes.start(id, sandboxes.container(id), startRequest(request))
  return [
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/processes$`),
      handler: async (req, res, [id]) => {
        const request = parseSpawnRequest(await readJson(req))
        await streamProcess(await start(id as string, request), res)
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/processes/${ID}/stdin$`),
      handler: async (req, res, [id, pid]) => {
        const process = processes.get(id as string, pid as string)
        const end = queryParams(req).get('end')
        if (end !== null && end !== 'true' && end !== 'false')
          throw new SandboxError(400, 'invalid-request', 'end must be true or false')
        let written = 0
        for await (const chunk of req as AsyncIterable<Buffer>) {
          await process.write(chunk)
          written += chunk.length
        }
        if (end === 'true') process.endStdin()
        sendJson(res, 200, { written })
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/processes/${ID}/kill$`),
      handler: async (req, res, [id, pid]) => {
        const signal = parseKillRequest(await readJson(req))
        await processes.get(id as string, pid as string).signal(signal)
        sendJson(res, 200, { id: pid, signal })
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/exec$`),
      handler: async (req, res, [id]) => {
        const process = await start(id as string, parseExecRequest(await readJson(req)))
        onClientGone(res, () => process.abandon())
        sendJson(res, 200, await collect(process))
      },
    },
  ]
}

function startRequest(request: ExecRequest & { stdin?: boolean }): StartRequest {
  return {
    cmd: typeof request.cmd === 'string' ? ['/bin/sh', '-c', request.cmd] : request.cmd,
    ...(request.env ? { env: Object.entries(request.env).map(([k, v]) => `${k}=${v}`) } : {}),
    ...(request.cwd ? { cwd: request.cwd } : {}),
    timeoutMs: request.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    stdin: request.stdin === true,
  }
}

/** Calls `gone` when the client closes the connection before the response is complete. */
function onClientGone(res: http.ServerResponse, gone: () => void): void {
  res.on('close', () => {
    if (!res.writableFinished) gone()
  })
}

function wire(event: ProcessEvent): ProcessStreamEvent {
  if ('stream' in event) return { type: event.stream, data: event.data.toString('base64') }
  if (event.type === 'exit')
    return { type: 'exit', exitCode: event.exitCode, timedOut: event.timedOut }
  return { type: 'error', error: { code: event.code, message: event.message } }
}

/** Streams a process's events as NDJSON until it ends; then the response ends. */
async function streamProcess(process: SandboxProcess, res: http.ServerResponse): Promise<void> {
  res.writeHead(200, {
    'Content-Type': 'application/x-ndjson',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  })
  let gone = false
  onClientGone(res, () => {
    gone = true
    process.abandon()
  })
  const line = (event: ProcessStreamEvent): string => `${JSON.stringify(event)}\n`
  // Small and rare: written without waiting for the client's buffer.
  const heartbeat = setInterval(() => gone || res.write(line({ type: 'heartbeat' })), HEARTBEAT_MS)
  try {
    res.write(line({ type: 'start', id: process.id, pid: process.pid }))
    // Read on after the client is gone, discarding, so the command never blocks on a full pipe.
    for await (const event of process.events()) {
      if (!gone) await writeChunk(res, line(wire(event)))
    }
  } finally {
    clearInterval(heartbeat)
    res.end()
  }
}

/** Collects stdout and stderr, each up to a limit. */
class BoundedOutput {
  private readonly chunks: Buffer[] = []
  private size = 0
  truncated = false

  push(chunk: Buffer): void {
    const room = EXEC_OUTPUT_LIMIT - this.size
    if (chunk.length > room) this.truncated = true
    if (room <= 0) return
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk
    this.chunks.push(kept)
    this.size += kept.length
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8')
  }
}

async function collect(process: SandboxProcess): Promise<ExecResult> {
  const stdout = new BoundedOutput()
  const stderr = new BoundedOutput()
  for await (const event of process.events()) {
    if ('stream' in event) (event.stream === 'stdout' ? stdout : stderr).push(event.data)
    else if (event.type === 'error') throw new SandboxError(409, event.code, event.message)
    else
      return {
        exitCode: event.exitCode,
        stdout: stdout.text(),
        stderr: stderr.text(),
        ...(event.timedOut ? { timedOut: true } : {}),
        ...(stdout.truncated || stderr.truncated ? { truncated: true } : {}),
      }
  }
  throw new SandboxError(500, 'exec-failed', `process ${process.id} ended without an exit status`)
}
