// One periodic check for every deadline that does not need to be exact: a
// CONNECT head that never ends, a tunnel with no traffic. A timer per socket
// (socket.setTimeout) is re-armed on every read and write, which costs a
// bulk transfer several percent of its CPU; one interval that compares byte
// counters with the last sweep costs nothing per chunk. A deadline fires
// between its time and one interval later.

export interface Sweepable {
  /** Called on every sweep with Date.now(); removes itself (sweeper.delete) when done. */
  sweep(now: number): void
}

export class Sweeper {
  private readonly items = new Set<Sweepable>()
  private timer: NodeJS.Timeout | undefined

  constructor(readonly intervalMs: number) {}

  add(item: Sweepable): void {
    this.items.add(item)
    if (!this.timer) {
      this.timer = setInterval(() => this.run(), this.intervalMs)
      this.timer.unref()
    }
  }

  delete(item: Sweepable): void {
    this.items.delete(item)
    if (this.items.size === 0 && this.timer) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  get size(): number {
    return this.items.size
  }

  private run(): void {
    const now = Date.now()
    for (const item of this.items) item.sweep(now)
  }
}

/**
 * How often to sweep for an idle limit: a quarter of it, between 50 ms and 1 s,
 * so that every deadline (also a CONNECT head's 30 s) holds to within a second.
 */
export function sweepInterval(idleMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(idleMs / 4)))
}
