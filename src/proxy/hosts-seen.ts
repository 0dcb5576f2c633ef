// What a sandbox reached or tried to reach, one entry per destination, for
// learning a profile (`isorun profiles learn`): unlike the event ring, it does
// not forget a host that was used early in a long run. Bounded: at most
// MAX_ENTRIES destinations; later new ones are counted as dropped.

import type { Decision, Reason } from '../policy/index.js'

const MAX_ENTRIES = 4096

/** A destination a sandbox used (or tried to), and how. */
export interface HostSeen {
  readonly host: string
  /** 0 for a DNS question. */
  readonly port: number
  /** Raw TCP (bytes the proxy does not read): learned as a `tcp:` rule. */
  readonly raw: boolean
  count: number
  readonly firstSeen: string
  lastSeen: string
  /** How the last request went: allowed, would-deny (report mode) or denied. */
  outcome: 'allowed' | 'would-deny' | 'denied'
}

/**
 * Refusals that say the policy did not allow the destination (so a learned
 * profile should): not special addresses, SNI or Host mismatches, unreadable
 * requests, which no profile changes.
 */
const POLICY_REFUSALS: ReadonlySet<Reason> = new Set<Reason>([
  'not-in-allow-list',
  'denied-by-mode',
  'denied-by-rule',
  'approval-denied',
  'approval-timeout',
  'unreadable-payload',
])

export class HostsSeen {
  private readonly entries = new Map<string, HostSeen>()
  private droppedCount = 0

  note(decision: Decision, time: string): void {
    if (decision.host === '') return
    const raw =
      decision.reason === 'unreadable-payload' ||
      (decision.action === 'allow' && decision.rule?.startsWith('tcp:') === true)
    if (decision.action === 'deny' && !POLICY_REFUSALS.has(decision.reason)) return
    // An unreadable payload to a host with endpoint rules is not a missing tcp: rule.
    if (decision.reason === 'unreadable-payload' && decision.from !== null) return
    const key = `${raw ? 't' : 'h'}${decision.port}/${decision.host}`
    const outcome =
      decision.action === 'deny' ? 'denied' : decision.wouldDeny ? 'would-deny' : 'allowed'
    const entry = this.entries.get(key)
    if (entry) {
      entry.count++
      entry.lastSeen = time
      entry.outcome = outcome
      return
    }
    if (this.entries.size >= MAX_ENTRIES) {
      this.droppedCount++
      return
    }
    this.entries.set(key, {
      host: decision.host,
      port: decision.port,
      raw,
      count: 1,
      firstSeen: time,
      lastSeen: time,
      outcome,
    })
  }

  list(): HostSeen[] {
    return [...this.entries.values()].map((e) => ({ ...e }))
  }

  get dropped(): number {
    return this.droppedCount
  }
}
