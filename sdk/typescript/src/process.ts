// A command running in a sandbox, as the runner streams it: one NDJSON line
// per event over a single HTTP response (start, stdout/stderr as base64,
// heartbeats, then exit or error). stdin and signals go in separate requests.

import { Readable } from 'node:stream'
import type { Isorun } from './client.js'
import { IsorunApiError, IsorunConnectionError } from './errors.js'
import type { ProcessResult, ProcessStreamEvent, SignalName } from './types.js'

export class SandboxProcess {
  /**
   * What the command writes to stdout, chunk by chunk as it arrives (Buffers;
   * `setEncoding('utf8')` for text). Chunks not read yet are kept in memory.
   */
  readonly stdout = new Readable({ read: () => undefined })
  /** What the command writes to stderr, like `stdout`. */
  readonly stderr = new Readable({ read: () => undefined })
  private readonly result: Promise<ProcessResult>
  /** stdin writes go out one after another, in order. */
  private stdinQueue: Promise<unknown> = Promise.resolve()

  private constructor(
    private readonly client: Isorun,
    readonly sandboxId: string,
    /** The runner's id of this process. */
    readonly id: string,
    /** The command's process id inside the sandbox. */
    readonly pid: number,
    events: AsyncGenerator<ProcessStreamEvent>,
  ) {
    this.result = this.pump(events)
    // wait() reports failures; a caller that never calls it must not get an unhandled rejection.
    this.result.catch(() => undefined)
  }

  /** @internal Reads the `start` event of a process stream and returns the running process. */
  static async start(
    client: Isorun,
    sandboxId: string,
    response: Response,
  ): Promise<SandboxProcess> {
    const events = readNdjson<ProcessStreamEvent>(response)
    let first: IteratorResult<ProcessStreamEvent>
    try {
      first = await events.next()
    } catch (err) {
      throw new IsorunConnectionError(
        `the process stream of sandbox ${sandboxId} broke before the command started: ${(err as Error).message}`,
        'stream-broken',
      )
    }
    if (first.done || first.value.type !== 'start') {
      await events.return(undefined)
      throw new IsorunConnectionError(
        `the runner's process stream for sandbox ${sandboxId} did not begin with a start event`,
        'bad-response',
      )
    }
    return new SandboxProcess(client, sandboxId, first.value.id, first.value.pid, events)
  }

  private async pump(events: AsyncGenerator<ProcessStreamEvent>): Promise<ProcessResult> {
    try {
      for await (const event of events) {
        switch (event.type) {
          case 'stdout':
          case 'stderr':
            // A stream the caller destroyed (e.g. left a for-await loop) takes no more.
            if (!this[event.type].destroyed)
              this[event.type].push(Buffer.from(event.data, 'base64'))
            break
          case 'exit':
            return { exitCode: event.exitCode, timedOut: event.timedOut }
          case 'error':
            throw new IsorunApiError(event.error.message, event.error.code)
          default:
            // heartbeat, or an event type this SDK does not know yet
            break
        }
      }
      throw new IsorunConnectionError(
        `the runner ended the stream of process ${this.id} without an exit status`,
        'stream-broken',
      )
    } catch (err) {
      if (err instanceof IsorunApiError || err instanceof IsorunConnectionError) throw err
      throw new IsorunConnectionError(
        `the connection to the runner broke while process ${this.id} ran: ${(err as Error).message}`,
        'stream-broken',
      )
    } finally {
      for (const stream of [this.stdout, this.stderr]) if (!stream.destroyed) stream.push(null)
    }
  }

  /** How the command ended: `{ exitCode, timedOut }`. Rejects if the stream broke or the sandbox went away. */
  wait(): Promise<ProcessResult> {
    return this.result
  }

  /** Writes to the command's stdin (spawned with `stdin: true`); resolves once the runner passed it on. */
  write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    return this.enqueueStdin('', bytes)
  }

  /** Closes the command's stdin: it reads end-of-file. */
  end(): Promise<void> {
    return this.enqueueStdin('?end=true', new Uint8Array(0))
  }

  private enqueueStdin(query: string, body: Uint8Array): Promise<void> {
    const send = async (): Promise<void> => {
      const response = await this.client.open('POST', `${this.path()}/stdin${query}`, { body })
      await response.body?.cancel()
    }
    const sent = this.stdinQueue.then(send)
    this.stdinQueue = sent.catch(() => undefined)
    return sent
  }

  /**
   * Sends a signal (default SIGKILL) to the command, its process group and
   * every process it started. A process that has already ended is not an error.
   */
  async kill(signal: SignalName = 'SIGKILL'): Promise<void> {
    try {
      await this.client.request('POST', `${this.path()}/kill`, { signal })
    } catch (err) {
      if (err instanceof IsorunApiError && err.code === 'process-not-found') return
      throw err
    }
  }

  private path(): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/processes/${encodeURIComponent(this.id)}`
  }
}

/** The NDJSON lines of a response body, parsed. */
export async function* readNdjson<T>(response: Response): AsyncGenerator<T> {
  if (!response.body) return
  const decoder = new TextDecoder()
  let pending = ''
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true })
    let newline: number
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline)
      pending = pending.slice(newline + 1)
      if (line.trim() !== '') yield JSON.parse(line) as T
    }
  }
}

/** Collects a stream's bytes as text, keeping at most `limit` bytes. */
export async function collectOutput(
  stream: Readable,
  limit: number,
): Promise<{ text: string; truncated: boolean }> {
  const chunks: Buffer[] = []
  let size = 0
  let truncated = false
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const room = limit - size
    if (chunk.length > room) truncated = true
    if (room <= 0) continue
    chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk)
    size += Math.min(chunk.length, room)
  }
  return { text: Buffer.concat(chunks).toString('utf8'), truncated }
}
