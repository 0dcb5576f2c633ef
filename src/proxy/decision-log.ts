// The decision log: one JSON line per decision on stdout, a bounded ring of
// recent decisions for the admin API (and through it the runner, the SDK and
// the CLI), and the metrics counters. Blocked decisions are always logged;
// allowed ones unless the operator turns them off.
//
// Every request makes a line, so this is on the hot path: the event is built
// with fixed fields in one object literal, and its line is written by a
// fixed-key writer (each string through JSON.stringify) rather than a generic
// logger. The line has the fields of the event, between "level" and "msg".

import type { Decision, Protocol, WouldDeny } from '../policy/index.js'
import type { ApprovalRecord } from './approvals.js'
import type { BudgetUsage } from './budgets.js'
import { HostsSeen } from './hosts-seen.js'
import { FdLineWriter, type LogDestination } from './line-writer.js'
import { ProxyMetrics } from './metrics.js'

export type { LogDestination } from './line-writer.js'

export interface DecisionEvent {
  readonly time: string
  readonly sandbox: string
  readonly profile: string
  readonly protocol: Protocol
  readonly host: string
  readonly port: number
  readonly sni?: string
  readonly method?: string
  readonly path?: string
  /** HTTP status of the response to a request the proxy read (plain or intercepted HTTP). */
  readonly status?: number
  /** DNS question type. */
  readonly qtype?: string
  readonly action: 'allow' | 'deny'
  readonly rule: string | null
  readonly reason: string
  readonly detail?: string
  /** Report mode: allowed, but the rules would have refused it. */
  readonly wouldDeny?: WouldDeny
  /** The request was held for an approval: its id, the answer and who gave it. */
  readonly approval?: ApprovalRecord
  /** The budget the destination counts against, with its usage. */
  readonly budget?: BudgetUsage
  readonly client?: string
  /** The address dialled, when one was. */
  readonly address?: string
  /** Why an allowed connection still failed (resolution, connect, upstream reset). */
  readonly error?: string
  readonly bytesUp: number
  readonly bytesDown: number
  readonly durationMs: number
}

/**
 * `would-deny`: report-mode decisions the rules would have refused; `blocked`:
 * those and the refusals, in order (what `isorun logs --blocked` shows).
 */
export type EventAction = 'allow' | 'deny' | 'would-deny' | 'blocked'
export const EVENT_ACTIONS: readonly EventAction[] = ['allow', 'deny', 'would-deny', 'blocked']

export interface EventQuery {
  readonly action?: EventAction
  readonly limit?: number
  /** Only events after this ISO time. */
  readonly since?: string
}

export interface DecisionLogOptions {
  readonly sandbox: string
  readonly logAllowed: boolean
  readonly ringSize: number
  /** Where lines go; stdout (batched per event-loop turn, flushed on exit) by default. */
  readonly destination?: LogDestination
}

/** What a listener knows when it records a decision (the profile is passed alongside). */
export interface DecisionRecord {
  readonly protocol: Protocol
  readonly decision: Decision
  readonly sni?: string | null
  readonly method?: string
  readonly path?: string
  readonly status?: number
  readonly qtype?: string
  readonly client?: string
  readonly address?: string
  readonly error?: string
  readonly approval?: ApprovalRecord
  readonly budget?: BudgetUsage
  readonly bytesUp?: number
  readonly bytesDown?: number
  readonly startedAt: number
}

/** Operational messages (start, stop, policy changes): rare, so plain JSON.stringify. */
export interface OperationalLog {
  info(fields: Record<string, unknown>, msg: string): void
  warn(fields: Record<string, unknown>, msg: string): void
  error(fields: Record<string, unknown>, msg: string): void
}

const MAX_PATH = 512

/**
 * `time` for an event: the ISO text of the second from toISOString() once a
 * second, its milliseconds added once a millisecond (not once per event).
 */
let isoMs = -1
let isoText = ''
let isoSecond = -1
/** "YYYY-MM-DDTHH:MM:SS." of isoSecond. */
let isoSecondText = ''
function isoNow(): string {
  const now = Date.now()
  if (now === isoMs) return isoText
  isoMs = now
  const second = Math.floor(now / 1000)
  if (second !== isoSecond) {
    isoSecond = second
    isoSecondText = new Date(second * 1000).toISOString().slice(0, 20)
  }
  const ms = now - second * 1000
  isoText = `${isoSecondText}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`
  return isoText
}

/** A JSON number; non-finite numbers are null, as JSON.stringify writes them. */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null'
}

/** The log line of an event; the same fields in the same order as the event. */
function lineOf(e: DecisionEvent, level: string, msg: string): string {
  let s = `{"level":"${level}","time":"${e.time}","sandbox":${JSON.stringify(e.sandbox)},"profile":${JSON.stringify(e.profile)},"protocol":"${e.protocol}","host":${JSON.stringify(e.host)},"port":${num(e.port)}`
  if (e.sni !== undefined) s += `,"sni":${JSON.stringify(e.sni)}`
  if (e.method !== undefined) s += `,"method":${JSON.stringify(e.method)}`
  if (e.path !== undefined) s += `,"path":${JSON.stringify(e.path)}`
  if (e.status !== undefined) s += `,"status":${num(e.status)}`
  if (e.qtype !== undefined) s += `,"qtype":${JSON.stringify(e.qtype)}`
  s += `,"action":"${e.action}","rule":${e.rule === null ? 'null' : JSON.stringify(e.rule)},"reason":${JSON.stringify(e.reason)}`
  if (e.detail !== undefined) s += `,"detail":${JSON.stringify(e.detail)}`
  if (e.wouldDeny !== undefined) s += `,"wouldDeny":${JSON.stringify(e.wouldDeny)}`
  if (e.approval !== undefined) s += `,"approval":${JSON.stringify(e.approval)}`
  if (e.budget !== undefined) s += `,"budget":${JSON.stringify(e.budget)}`
  if (e.client !== undefined) s += `,"client":${JSON.stringify(e.client)}`
  if (e.address !== undefined) s += `,"address":${JSON.stringify(e.address)}`
  if (e.error !== undefined) s += `,"error":${JSON.stringify(e.error)}`
  return `${s},"bytesUp":${num(e.bytesUp)},"bytesDown":${num(e.bytesDown)},"durationMs":${num(e.durationMs)},"msg":"${msg}"}\n`
}

export class DecisionLog {
  readonly metrics = new ProxyMetrics()
  /** Every destination used, for learning a profile. */
  readonly hostsSeen = new HostsSeen()
  readonly operational: OperationalLog
  private readonly destination: LogDestination
  private readonly denied: Ring<Sequenced>
  private readonly allowed: Ring<Sequenced>
  private sequence = 0
  private readonly listeners = new Set<(event: DecisionEvent) => void>()

  constructor(private readonly options: DecisionLogOptions) {
    this.denied = new Ring(options.ringSize)
    this.allowed = new Ring(options.ringSize)
    const destination = options.destination ?? new FdLineWriter(1)
    this.destination = destination
    const say =
      (level: string) =>
      (fields: Record<string, unknown>, msg: string): void =>
        void destination.write(`${JSON.stringify({ level, ...fields, msg })}\n`)
    this.operational = { info: say('info'), warn: say('warn'), error: say('error') }
  }

  record(r: DecisionRecord, profile: string): DecisionEvent {
    const d = r.decision
    const path = r.path
    // One literal with every field (absent ones undefined): one shape for every event.
    const event: DecisionEvent = {
      time: isoNow(),
      sandbox: this.options.sandbox,
      profile,
      protocol: r.protocol,
      host: d.host,
      port: d.port,
      sni: r.sni || undefined,
      method: r.method || undefined,
      path:
        path === undefined
          ? undefined
          : path.length > MAX_PATH
            ? `${path.slice(0, MAX_PATH)}…`
            : path,
      status: r.status,
      qtype: r.qtype || undefined,
      action: d.action,
      rule: d.rule,
      reason: d.reason,
      detail: d.detail || undefined,
      wouldDeny: d.wouldDeny,
      approval: r.approval,
      budget: r.budget,
      client: r.client || undefined,
      address: r.address || undefined,
      error: r.error || undefined,
      bytesUp: r.bytesUp ?? 0,
      bytesDown: r.bytesDown ?? 0,
      durationMs: Math.round((performance.now() - r.startedAt) * 10) / 10,
    }
    this.metrics.countDecision(d.action, d.reason, r.protocol)
    if (d.wouldDeny) this.metrics.countWouldDeny(d.wouldDeny.reason, r.protocol)
    if (r.approval) this.metrics.countApproval(r.approval.answer)
    this.metrics.countBytes(event.bytesUp, event.bytesDown)
    this.hostsSeen.note(d, event.time)
    this.remember(event)
    if (d.action === 'deny') this.destination.write(lineOf(event, 'warn', 'blocked'), true)
    // A would-deny is what report mode is for: written even when allowed lines are off.
    else if (d.wouldDeny) this.destination.write(lineOf(event, 'warn', 'would-deny'), true)
    else if (this.options.logAllowed) this.destination.write(lineOf(event, 'info', 'allowed'))
    if (this.listeners.size > 0) for (const listener of this.listeners) listener(event)
    return event
  }

  private remember(event: DecisionEvent): void {
    // Refusals have a ring of their own, so a flood of allowed decisions (cheap to cause
    // from inside a sandbox) cannot push the refusals an operator looks for out of it.
    // Would-deny events go with the refusals, for the same reason.
    const entry = { seq: this.sequence++, event }
    if (event.action === 'deny' || event.wouldDeny) this.denied.add(entry)
    else this.allowed.add(entry)
  }

  get size(): number {
    return this.denied.size + this.allowed.size
  }

  /** Recent events, oldest first, filtered; at most `limit` (the newest ones). */
  events(query: EventQuery = {}): DecisionEvent[] {
    const merged =
      query.action === 'deny' || query.action === 'would-deny' || query.action === 'blocked'
        ? this.denied.items()
        : mergeInOrder(this.denied.items(), this.allowed.items())
    const wanted = ACTION_FILTER[query.action ?? 'any']
    const events = merged.map((entry) => entry.event).filter(wanted)
    const filtered = query.since ? events.filter((e) => e.time > (query.since as string)) : events
    const limit = query.limit ?? 100
    return limit >= filtered.length ? filtered : filtered.slice(filtered.length - limit)
  }

  subscribe(listener: (event: DecisionEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Starts writing what stdout's writer holds now rather than when its next write is due. */
  flush(): void {
    if (this.destination instanceof FdLineWriter) this.destination.flush()
  }
}

const ACTION_FILTER: Readonly<Record<EventAction | 'any', (e: DecisionEvent) => boolean>> = {
  any: () => true,
  blocked: () => true,
  allow: (e) => e.action === 'allow',
  deny: (e) => e.action === 'deny',
  'would-deny': (e) => e.wouldDeny !== undefined,
}

/** A fixed-size ring of the most recent items. */
class Ring<T> {
  private readonly buffer: T[] = []
  private start = 0

  constructor(private readonly capacity: number) {}

  add(item: T): void {
    if (this.capacity <= 0) return
    if (this.buffer.length < this.capacity) {
      this.buffer.push(item)
    } else {
      this.buffer[this.start] = item
      this.start = (this.start + 1) % this.capacity
    }
  }

  get size(): number {
    return this.buffer.length
  }

  /** Oldest first. */
  items(): T[] {
    return [...this.buffer.slice(this.start), ...this.buffer.slice(0, this.start)]
  }
}

/** An event and the order it was recorded in. */
interface Sequenced {
  readonly seq: number
  readonly event: DecisionEvent
}

/** Two lists each in recording order, merged in recording order. */
function mergeInOrder(a: readonly Sequenced[], b: readonly Sequenced[]): Sequenced[] {
  const out: Sequenced[] = []
  let i = 0
  let j = 0
  while (i < a.length && j < b.length)
    out.push(
      (a[i] as Sequenced).seq < (b[j] as Sequenced).seq
        ? (a[i++] as Sequenced)
        : (b[j++] as Sequenced),
    )
  while (i < a.length) out.push(a[i++] as Sequenced)
  while (j < b.length) out.push(b[j++] as Sequenced)
  return out
}
