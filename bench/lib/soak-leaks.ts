// bench:soak's leak checks: what the proxy under test and its upstreams hold
// (descriptors, sockets by state, unread bytes, RSS, the live heap after a
// collection) before a load and once it has settled, and the checks on them.

import type tls from 'node:tls'
import { heapAfterGc } from './heap.js'
import type { RunningProxy } from './isorun-proxy.js'
import { memory } from './procstat.js'
import { check, type Figure } from './soak-report.js'
import { fdCount, formatStates, summarizeSockets, tcpSocketsOf } from './sockets.js'
import type { Upstreams } from './upstream-process.js'

export const MiB = 1024
export const mib = (kib: number): string => (kib / MiB).toFixed(1)

/**
 * How long the proxy and the upstream get to close what a load left open: idle pooled
 * upstream connections of plain-HTTP forwarding are kept for 30 s (http-forward.ts).
 */
const SETTLE_MS = 45_000

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export interface Bench {
  readonly scratch: string
  readonly caFile: string
  /** Trusts the upstream's CA; one for every TLS client (making one costs milliseconds). */
  readonly secureContext: tls.SecureContext
  readonly up: Upstreams
}

/** The proxy under test, with its inspector open (for its live heap after a collection). */
export interface SoakProxy extends RunningProxy {
  readonly inspectPort: number
}

export interface Snapshot {
  readonly rssKiB: number
  /** The proxy's live heap after a full collection, KiB (taken by settle() only). */
  readonly heapKiB?: number
  readonly fds: number
  /** The proxy's connections to the upstreams. */
  readonly toUpstream: number
  readonly proxyStates: string
  readonly proxyCloseWait: number
  readonly proxyUnread: number
  /** The upstream's connections (whoever they come from). */
  readonly upstreamConnections: number
  readonly upstreamCloseWait: number
  readonly upstreamUnread: number
}

export function snapshot(bench: Bench, proxy: SoakProxy): Snapshot {
  const own = summarizeSockets(tcpSocketsOf(proxy.pid), [bench.up.httpPort, bench.up.tlsPort])
  const up = summarizeSockets(tcpSocketsOf(bench.up.pid))
  return {
    rssKiB: memory(proxy.pid)?.rssKiB ?? 0,
    fds: fdCount(proxy.pid),
    toUpstream: own.toPeers,
    proxyStates: formatStates(own.states),
    proxyCloseWait: own.closeWait,
    proxyUnread: own.withUnread,
    upstreamConnections: Object.values(up.states).reduce((a, b) => a + b, 0),
    upstreamCloseWait: up.closeWait,
    upstreamUnread: up.withUnread,
  }
}

/** Waits (up to SETTLE_MS) until nothing a load opened is left; the last snapshot and the wait. */
export async function settle(
  bench: Bench,
  proxy: SoakProxy,
  baseline: Snapshot,
): Promise<{ after: Snapshot; seconds: number }> {
  const started = Date.now()
  let after = snapshot(bench, proxy)
  const clean = (s: Snapshot): boolean =>
    s.fds <= baseline.fds &&
    s.toUpstream === 0 &&
    s.proxyCloseWait === 0 &&
    s.upstreamConnections === 0
  while (!clean(after) && Date.now() - started < SETTLE_MS) {
    await sleep(250)
    after = snapshot(bench, proxy)
  }
  const seconds = (Date.now() - started) / 1000
  const heapKiB = (await heapAfterGc(proxy.inspectPort)) / 1024
  return { after: { ...after, heapKiB }, seconds }
}

/** The checks every proxy scenario ends with, and the figures behind them. */
export function leakChecks(
  baseline: Snapshot,
  settled: { after: Snapshot; seconds: number },
): { figures: Figure[]; checks: ReturnType<typeof check>[] } {
  const a = settled.after
  // RSS stays above where it started (V8 and malloc keep freed pages for reuse): allowed
  // half again. The live heap after a collection is the leak check, and a tight one.
  const rssToleranceKiB = Math.max(32 * MiB, baseline.rssKiB / 2)
  const heapToleranceKiB = 2 * MiB
  const heapBefore = baseline.heapKiB ?? 0
  const heapAfter = a.heapKiB ?? 0
  return {
    figures: [
      ['proxy live heap after GC, baseline / after', `${mib(heapBefore)} / ${mib(heapAfter)} MiB`],
      ['proxy RSS baseline / after', `${mib(baseline.rssKiB)} / ${mib(a.rssKiB)} MiB`],
      ['proxy fds baseline / after', `${baseline.fds} / ${a.fds}`],
      ['proxy sockets left (not listening)', a.proxyStates],
      ['settled after', `${settled.seconds.toFixed(1)} s`],
    ],
    checks: [
      check(
        'proxy fds back to baseline',
        a.fds <= baseline.fds,
        `${a.fds} (baseline ${baseline.fds})`,
      ),
      check(
        'proxy live heap back to baseline',
        heapAfter <= heapBefore + heapToleranceKiB,
        `${mib(heapAfter)} MiB, baseline ${mib(heapBefore)} + ${mib(heapToleranceKiB)} allowed`,
      ),
      check(
        'proxy RSS back near baseline',
        a.rssKiB <= baseline.rssKiB + rssToleranceKiB,
        `${mib(a.rssKiB)} MiB, baseline ${mib(baseline.rssKiB)} + ${mib(rssToleranceKiB)} allowed`,
      ),
      check('no proxy connection to the upstreams left', a.toUpstream === 0, `${a.toUpstream}`),
      check(
        'no connection left on the upstream',
        a.upstreamConnections === 0,
        `${a.upstreamConnections}`,
      ),
      check(
        'nothing in CLOSE_WAIT',
        a.proxyCloseWait + a.upstreamCloseWait === 0,
        `proxy ${a.proxyCloseWait}, upstream ${a.upstreamCloseWait}`,
      ),
      check(
        'no unread data left in a socket (a paused stream)',
        a.proxyUnread + a.upstreamUnread === 0,
        `proxy ${a.proxyUnread}, upstream ${a.upstreamUnread}`,
      ),
    ],
  }
}
