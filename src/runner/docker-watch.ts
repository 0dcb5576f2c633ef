// Follows the Docker engine's event stream for isorun's containers, and keeps
// following it when the engine goes away (dockerd restarted or upgraded): the
// stream ends, and it is opened again as soon as the engine answers.
//
// The runner needs this because a restarted engine restarts the sidecars (they
// have a restart policy), and a restarted proxy refuses everything until the
// runner sends it its policy again: `onConnected` runs after every (re)connect
// so the runner can catch up on what it missed, and `onContainerStart` runs
// for every isorun container that starts while connected.

import type { Docker } from './docker.js'
import { dockerMessage } from './docker.js'

export interface DockerWatchHandlers {
  /** After the stream is open: the first time, and after every reconnect. */
  onConnected(reconnected: boolean): Promise<void> | void
  /** A container with an isorun.sandbox label started. */
  onContainerStart(labels: Record<string, string>): void
  /** The stream broke (the engine is gone or restarting). */
  onDisconnected(reason: string): void
}

interface EngineEvent {
  readonly Type?: string
  readonly Action?: string
  readonly Actor?: { readonly Attributes?: Record<string, string> }
}

/** Between attempts to reach an engine that does not answer: 0.5 s, doubling to 5 s. */
const RETRY_MS = { first: 500, max: 5000 }

export class DockerWatch {
  private stream: NodeJS.ReadableStream | undefined
  private stopped = false
  private retryTimer: NodeJS.Timeout | undefined
  private connectedOnce = false

  constructor(
    private readonly docker: Docker,
    private readonly label: string,
    private readonly handlers: DockerWatchHandlers,
  ) {}

  start(): void {
    void this.connect(RETRY_MS.first)
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.retryTimer)
    const stream = this.stream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined
    stream?.destroy?.()
    this.stream = undefined
  }

  private retry(delayMs: number): void {
    if (this.stopped) return
    this.retryTimer = setTimeout(
      () => void this.connect(Math.min(delayMs * 2, RETRY_MS.max)),
      delayMs,
    )
    this.retryTimer.unref()
  }

  private async connect(nextDelayMs: number): Promise<void> {
    if (this.stopped) return
    let stream: NodeJS.ReadableStream
    try {
      stream = (await this.docker.getEvents({
        filters: { type: ['container'], event: ['start'], label: [this.label] },
      })) as NodeJS.ReadableStream
    } catch {
      this.retry(nextDelayMs)
      return
    }
    if (this.stopped) {
      ;(stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.()
      return
    }
    this.stream = stream
    let rest = ''
    let ended = false
    const end = (reason: string): void => {
      if (ended) return
      ended = true
      this.stream = undefined
      if (this.stopped) return
      this.handlers.onDisconnected(reason)
      this.retry(RETRY_MS.first)
    }
    stream.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n')
      rest = lines.pop() ?? ''
      for (const line of lines) {
        if (line.trim() === '') continue
        let event: EngineEvent
        try {
          event = JSON.parse(line) as EngineEvent
        } catch {
          continue
        }
        if (event.Type === 'container' && event.Action === 'start')
          this.handlers.onContainerStart(event.Actor?.Attributes ?? {})
      }
    })
    stream.on('end', () => end('the engine closed its event stream'))
    stream.on('close', () => end('the engine closed its event stream'))
    stream.on('error', (err: unknown) => end(dockerMessage(err)))
    const reconnected = this.connectedOnce
    this.connectedOnce = true
    try {
      await this.handlers.onConnected(reconnected)
    } catch {
      // The handler logs its own failures; the stream stays open either way.
    }
  }
}
