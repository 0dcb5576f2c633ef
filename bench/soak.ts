// npm run bench:soak — load and faults against the egress proxy and the
// runner, bounded in time, with a pass/fail check for every promise:
//
//   tunnels    1,000 concurrent CONNECT tunnels with TLS to a loopback upstream,
//              a small request on each every few seconds for 60 s: no errors;
//              the proxy's RSS and file descriptors back to baseline after
//   slowloris  1,000 connections that start and never finish (partial HTTP heads,
//              partial ClientHellos on the transparent listener and inside a
//              CONNECT tunnel, partial SOCKS greetings): new clients' latency
//              (p50/p99, plain HTTP and CONNECT+TLS) while they are held,
//              against the same clients without them; when the proxy drops them
//   faults     10,000 repetitions of each: an upstream that resets mid-transfer,
//              and a client that vanishes mid-transfer, through CONNECT tunnels
//              and plain HTTP forwarding; sockets and memory after
//   creates    20 concurrent sandbox creates: all succeed, distinct subnets, no
//              leftovers (containers, networks, volumes) after destroy
//   kill       the runner killed with SIGKILL at each step of a create; nothing is
//              left once it is restarted
//   dockerd    dockerd restarted while sandboxes run: the runner reconnects, the
//              sandboxes are usable again (or reported stopped)
//
// After every proxy load: no connection to the upstreams left open, none in
// CLOSE_WAIT, none with unread data (a paused stream), on the proxy's side and
// the upstream's (/proc/PID/fd and /proc/net/tcp{,6}).
//
// The proxy, the upstreams and the runner run as child processes, so their
// memory, descriptors and sockets are their own. Traffic stays on loopback,
// plus the containers and networks the Docker scenarios create. The Docker
// scenarios restart and disturb the shared engine: they take the e2e lock
// (/tmp/isorun-e2e.lock) themselves, waiting for running end-to-end tests; do
// not wrap this command in another flock on that file (the bench sees an
// ancestor holding it and goes on, but a sibling would wait forever).
//
// Options:
//   --only LIST       scenarios to run (default: all): tunnels,slowloris,faults,creates,kill,dockerd
//   --quick           a smaller, shorter run (a minute or two): 200 tunnels for 10 s,
//                     400 slow connections, 1,000 repetitions per fault
//   --json            the report as JSON on stdout (progress stays on stderr)
//   --tunnels N, --tunnel-seconds S, --slow N, --reps N, --creates N   scale by hand

import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { makeCertificates } from './lib/certs.js'
import { startUpstreamProcess, type Upstreams } from './lib/upstream-process.js'
import { allowOnLoopback, startIsorunProxy, type RunningProxy } from './lib/isorun-proxy.js'
import { tlsRequest, type LoadSpec } from './lib/load.js'
import { percentile } from './lib/measure.js'
import { heapAfterGc, inspectFlag } from './lib/heap.js'
import { freePort } from './lib/net.js'
import { memory, RssSampler } from './lib/procstat.js'
import {
  clientHelloPrefix,
  FAULT_KINDS,
  KeepAliveTunnel,
  openSlow,
  OpError,
  proxiedGet,
  runFault,
  SLOW_KINDS,
  type FaultKind,
} from './lib/soak-clients.js'
import { dockerScenarios, type DockerScenario } from './lib/soak-docker.js'
import { fdCount, formatStates, summarizeSockets, tcpSocketsOf } from './lib/sockets.js'
import {
  check,
  progress,
  renderReport,
  type ScenarioResult,
  type Figure,
} from './lib/soak-report.js'

const NAME = 'bench.test'
const LOOPBACK = '127.0.0.1'
const HERE = fileURLToPath(new URL('.', import.meta.url)) // dist/bench/
const UPSTREAM = join(HERE, 'lib/soak-upstream.js')
const MiB = 1024

// ---------------------------------------------------------------- options

const args = process.argv.slice(2)
function option(name: string): string | undefined {
  const at = args.indexOf(name)
  if (at < 0) return undefined
  const next = args[at + 1]
  return next !== undefined && !next.startsWith('--') ? next : ''
}
function count(name: string, fallback: number): number {
  const raw = option(name)
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} "${raw}" must be a whole number ≥ 1`)
  return n
}
const ALL = ['tunnels', 'slowloris', 'faults', 'creates', 'kill', 'dockerd'] as const
type Scenario = (typeof ALL)[number]
const ONLY = ((): Scenario[] => {
  const raw = option('--only')
  if (!raw) return [...ALL]
  const picked = raw.split(',').filter(Boolean)
  const unknown = picked.filter((p) => !(ALL as readonly string[]).includes(p))
  if (unknown.length > 0)
    throw new Error(`--only: unknown scenario ${unknown.join(', ')}; known: ${ALL.join(', ')}`)
  return picked as Scenario[]
})()
const QUICK = option('--quick') !== undefined
const JSON_OUT = option('--json') !== undefined
const TUNNELS = count('--tunnels', QUICK ? 200 : 1000)
const TUNNEL_SECONDS = count('--tunnel-seconds', QUICK ? 10 : 60)
/** Each tunnel sends a small request about this often (jittered). */
const TUNNEL_REQUEST_EVERY_MS = 5000
const SLOW = count('--slow', QUICK ? 400 : 1000)
const REPS = count('--reps', QUICK ? 1000 : 10_000)
const CREATES = count('--creates', 20)
/** Latency probes per client kind, without and with the slow connections held. */
const PROBES = QUICK ? 100 : 200
const FAULT_CONCURRENCY = 32
const OPEN_CONCURRENCY = 50
/**
 * How long the proxy and the upstream get to close what a load left open: idle pooled
 * upstream connections of plain-HTTP forwarding are kept for 30 s (http-forward.ts).
 */
const SETTLE_MS = 45_000
/**
 * How long the proxy gets to drop the slow connections: its handshake and first-bytes
 * limits are 10-15 s; Node's HTTP server checks its 30 s headersTimeout every 30 s.
 */
const DROP_WAIT_MS = 90_000
/** The p99 new clients must stay under while the slow connections are held. */
const SLOWLORIS_P99_GOAL_MS = 100

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------- set-up

interface Bench {
  readonly scratch: string
  readonly caFile: string
  /** Trusts the upstream's CA; one for every TLS client (making one costs milliseconds). */
  readonly secureContext: tls.SecureContext
  readonly up: Upstreams
}

/** The proxy under test, with its inspector open (for its live heap after a collection). */
interface SoakProxy extends RunningProxy {
  readonly inspectPort: number
}

async function startProxy(): Promise<SoakProxy> {
  const inspectPort = await freePort()
  const proxy = await startIsorunProxy([...allowOnLoopback(NAME), '--no-log-allowed'], {
    socks: true,
    tls: true,
    nodeFlags: ['--max-semi-space-size=1', inspectFlag(inspectPort)],
  })
  return { ...proxy, inspectPort }
}

function tunnelSpec(bench: Bench, proxy: SoakProxy): LoadSpec {
  return {
    mode: 'churn',
    proxy: { host: LOOPBACK, port: proxy.port },
    upstream: { host: LOOPBACK, port: bench.up.tlsPort },
    name: NAME,
    caFile: bench.caFile,
  }
}

// ---------------------------------------------------------------- leak checks

interface Snapshot {
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

function snapshot(bench: Bench, proxy: SoakProxy): Snapshot {
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
async function settle(
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
function leakChecks(
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

const mib = (kib: number): string => (kib / MiB).toFixed(1)

/** Runs `fn` on `items` with at most `limit` at a time. */
async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      await fn(items[i] as T, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

class Errors {
  count = 0
  first: string | undefined
  add(err: unknown): void {
    this.count++
    this.first ??= err instanceof Error ? err.message : String(err)
  }
  get detail(): string {
    return this.count === 0 ? '0' : `${this.count} (first: ${this.first})`
  }
}

/**
 * Operations before the baseline: enough to fill the proxy's ring of recent decisions
 * (1,000) and to compile every code path the scenario takes, so that what the baseline
 * and the end have in common cancels out.
 */
const WARMUP_OPS = 1200

/** A fresh proxy, warmed up with `op` (WARMUP_OPS times), and its baseline once settled. */
async function freshProxy(
  bench: Bench,
  op: (proxy: SoakProxy) => Promise<unknown>,
): Promise<{ proxy: SoakProxy; baseline: Snapshot }> {
  const proxy = await startProxy()
  progress(`warming up a fresh proxy (${WARMUP_OPS} operations like the scenario's)`)
  await pool(Array.from({ length: WARMUP_OPS }), 16, () => op(proxy).then(() => undefined))
  const empty = snapshot(bench, proxy)
  const { after } = await settle(bench, proxy, { ...empty, fds: Number.MAX_SAFE_INTEGER })
  return { proxy, baseline: after }
}

// ---------------------------------------------------------------- tunnels

async function tunnels(bench: Bench): Promise<ScenarioResult> {
  const { proxy, baseline } = await freshProxy(bench, (p) =>
    tlsRequest(tunnelSpec(bench, p), bench.secureContext, '/small'),
  )
  try {
    const spec = tunnelSpec(bench, proxy)
    const ca = bench.secureContext
    const sampler = new RssSampler(proxy.pid, 500)
    const openErrors = new Errors()
    const requestErrors = new Errors()
    const open: KeepAliveTunnel[] = []
    progress(`tunnels: opening ${TUNNELS} CONNECT+TLS tunnels`)
    await pool(Array.from({ length: TUNNELS }), OPEN_CONCURRENCY, async () => {
      try {
        open.push(await KeepAliveTunnel.open(spec, ca))
      } catch (err) {
        openErrors.add(err)
      }
    })
    const peakFds = fdCount(proxy.pid)
    progress(
      `tunnels: ${open.length} open (proxy fds ${peakFds}); requests for ${TUNNEL_SECONDS} s`,
    )
    const deadline = Date.now() + TUNNEL_SECONDS * 1000
    let requests = 0
    const ticker = setInterval(
      () => progress(`tunnels: ${requests} requests, ${requestErrors.count} errors`),
      10_000,
    )
    await Promise.all(
      open.map(async (t) => {
        await sleep(Math.random() * TUNNEL_REQUEST_EVERY_MS)
        while (Date.now() < deadline) {
          try {
            await t.get('/small')
            requests++
          } catch (err) {
            requestErrors.add(err)
            return
          }
          await sleep(TUNNEL_REQUEST_EVERY_MS * (0.5 + Math.random()))
        }
      }),
    )
    clearInterval(ticker)
    const peakKiB = sampler.stop()
    for (const t of open) t.close()
    progress('tunnels: closed; waiting for the proxy to settle')
    const settled = await settle(bench, proxy, baseline)
    const leaks = leakChecks(baseline, settled)
    return {
      name: 'tunnels',
      title: `${TUNNELS} concurrent CONNECT+TLS tunnels for ${TUNNEL_SECONDS} s (a small request on each every ~${TUNNEL_REQUEST_EVERY_MS / 1000} s)`,
      figures: [
        ['tunnels open at once', open.length],
        ['requests through them', requests],
        ['proxy RSS peak', `${mib(peakKiB)} MiB`],
        ['proxy fds at peak', peakFds],
        ...leaks.figures,
      ],
      checks: [
        check('every tunnel opened', openErrors.count === 0, openErrors.detail),
        check('no request failed', requestErrors.count === 0, requestErrors.detail),
        ...leaks.checks,
      ],
    }
  } finally {
    await proxy.stop()
  }
}

// ---------------------------------------------------------------- slowloris

interface Latency {
  readonly p50: number
  readonly p99: number
  readonly errors: Errors
}

/** PROBES new clients one after another; each one's latency in ms. */
async function probe(kind: 'http' | 'connect', bench: Bench, proxy: SoakProxy): Promise<Latency> {
  const spec = tunnelSpec(bench, proxy)
  const ca = bench.secureContext
  const times: number[] = []
  const errors = new Errors()
  for (let i = 0; i < PROBES; i++) {
    const started = performance.now()
    try {
      if (kind === 'http') await proxiedGet(proxy.port, `http://${NAME}:${bench.up.httpPort}/small`)
      else await tlsRequest(spec, ca, '/small')
      times.push(performance.now() - started)
    } catch (err) {
      errors.add(err)
    }
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99), errors }
}

async function slowloris(bench: Bench): Promise<ScenarioResult> {
  let i = 0
  const { proxy, baseline } = await freshProxy(bench, (p) =>
    i++ % 2 === 0
      ? proxiedGet(p.port, `http://${NAME}:${bench.up.httpPort}/small`)
      : tlsRequest(tunnelSpec(bench, p), bench.secureContext, '/small'),
  )
  try {
    const hello = await clientHelloPrefix(NAME)
    progress('slowloris: latency of new clients without slow connections')
    const before = {
      http: await probe('http', bench, proxy),
      connect: await probe('connect', bench, proxy),
    }

    progress(`slowloris: opening ${SLOW} connections that never finish`)
    const ports = {
      http: proxy.port,
      socks: proxy.socksPort as number,
      tls: proxy.tlsPort as number,
      upstreamTls: bench.up.tlsPort,
    }
    const openedAt = Date.now()
    const closedBy = new Map<string, number[]>(SLOW_KINDS.map((k) => [k, []]))
    const held: { socket: import('node:net').Socket; kind: string }[] = []
    const openErrors = new Errors()
    let stopping = false
    await pool(Array.from({ length: SLOW }), OPEN_CONCURRENCY, async (_, i) => {
      const kind = SLOW_KINDS[i % SLOW_KINDS.length] as (typeof SLOW_KINDS)[number]
      try {
        const socket = await openSlow(kind, ports, NAME, hello)
        socket.on('error', () => undefined)
        socket.once('close', () => {
          if (!stopping) closedBy.get(kind)?.push((Date.now() - openedAt) / 1000)
        })
        held.push({ socket, kind })
      } catch (err) {
        openErrors.add(err)
      }
    })
    const heldFds = fdCount(proxy.pid)
    progress(`slowloris: ${held.length} held (proxy fds ${heldFds}); latency of new clients now`)
    const during = {
      http: await probe('http', bench, proxy),
      connect: await probe('connect', bench, proxy),
    }
    const stillOpen = held.filter((h) => !h.socket.destroyed).length
    const probedFor = (Date.now() - openedAt) / 1000

    progress(
      `slowloris: waiting (up to ${DROP_WAIT_MS / 1000} s) for the proxy to drop the slow connections`,
    )
    const dropDeadline = openedAt + DROP_WAIT_MS
    while (held.some((h) => !h.socket.destroyed) && Date.now() < dropDeadline) await sleep(250)
    const neverDropped = new Map<string, number>()
    for (const h of held)
      if (!h.socket.destroyed) neverDropped.set(h.kind, (neverDropped.get(h.kind) ?? 0) + 1)
    stopping = true
    for (const h of held) h.socket.destroy()
    const settled = await settle(bench, proxy, baseline)
    const leaks = leakChecks(baseline, settled)
    const ms = (n: number): string => `${n.toFixed(1)} ms`
    const dropped = SLOW_KINDS.map((k) => {
      const times = closedBy.get(k) ?? []
      const left = neverDropped.get(k) ?? 0
      return [
        `dropped by the proxy: ${k}`,
        `${times.length}${times.length > 0 ? `, after ${Math.min(...times).toFixed(1)}–${Math.max(...times).toFixed(1)} s` : ''}${left > 0 ? `; ${left} still open after ${DROP_WAIT_MS / 1000} s` : ''}`,
      ] as Figure
    })
    return {
      name: 'slowloris',
      title: `${held.length} half-open connections (${SLOW_KINDS.join(', ')}) while new clients come (${PROBES} each, one at a time)`,
      figures: [
        ['new HTTP clients p50 / p99, without', `${ms(before.http.p50)} / ${ms(before.http.p99)}`],
        ['new HTTP clients p50 / p99, with', `${ms(during.http.p50)} / ${ms(during.http.p99)}`],
        [
          'new CONNECT+TLS p50 / p99, without',
          `${ms(before.connect.p50)} / ${ms(before.connect.p99)}`,
        ],
        [
          'new CONNECT+TLS p50 / p99, with',
          `${ms(during.connect.p50)} / ${ms(during.connect.p99)}`,
        ],
        [
          'slow connections still held after the probes',
          `${stillOpen} (${probedFor.toFixed(1)} s after opening)`,
        ],
        ['proxy fds while held', heldFds],
        ...dropped,
        ...leaks.figures,
      ],
      checks: [
        check('every slow connection opened', openErrors.count === 0, openErrors.detail),
        check(
          'slow connections still held while probing',
          stillOpen === held.length,
          `${stillOpen} of ${held.length}`,
        ),
        check(
          `new HTTP clients p99 < ${SLOWLORIS_P99_GOAL_MS} ms while held`,
          during.http.p99 < SLOWLORIS_P99_GOAL_MS,
          ms(during.http.p99),
        ),
        check(
          `new CONNECT+TLS clients p99 < ${SLOWLORIS_P99_GOAL_MS} ms while held`,
          during.connect.p99 < SLOWLORIS_P99_GOAL_MS,
          ms(during.connect.p99),
        ),
        check(
          'no new client failed',
          before.http.errors.count +
            before.connect.errors.count +
            during.http.errors.count +
            during.connect.errors.count ===
            0,
          `${during.http.errors.detail}; ${during.connect.errors.detail}`,
        ),
        check(
          `the proxy dropped every slow connection within ${DROP_WAIT_MS / 1000} s`,
          neverDropped.size === 0,
          [...neverDropped].map(([k, n]) => `${k}: ${n} left`).join(', ') || 'all dropped',
        ),
        ...leaks.checks,
      ],
    }
  } finally {
    await proxy.stop()
  }
}

// ---------------------------------------------------------------- faults

async function faults(bench: Bench): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = []
  for (const kind of FAULT_KINDS) results.push(await fault(bench, kind))
  return results
}

function faultTarget(bench: Bench, proxy: SoakProxy): Parameters<typeof runFault>[1] {
  return {
    proxyPort: proxy.port,
    httpUrl: `http://${NAME}:${bench.up.httpPort}/`,
    tunnel: tunnelSpec(bench, proxy),
    secureContext: bench.secureContext,
  }
}

async function fault(bench: Bench, kind: FaultKind): Promise<ScenarioResult> {
  const { proxy, baseline } = await freshProxy(bench, (p) =>
    runFault(kind, faultTarget(bench, p)).catch(() => undefined),
  )
  try {
    const target = faultTarget(bench, proxy)
    const outcomes = { cut: 0, completed: 0 }
    const errors = new Errors()
    const hung = new Errors()
    let done = 0
    let warmHeap: Promise<number> | undefined
    const tenth = Math.max(1, Math.floor(REPS / 10))
    const started = Date.now()
    await pool(Array.from({ length: REPS }), FAULT_CONCURRENCY, async () => {
      try {
        outcomes[await runFault(kind, target)]++
      } catch (err) {
        if (err instanceof OpError && err.kind === 'hung') hung.add(err)
        else errors.add(err)
      }
      done++
      if (done % tenth === 0) {
        // Memory after the first tenth (warm) against the end: growth is what leaks.
        if (done === tenth) warmHeap = heapAfterGc(proxy.inspectPort)
        progress(`faults: ${kind}: ${done}/${REPS}`)
      }
    })
    const seconds = (Date.now() - started) / 1000
    const settled = await settle(bench, proxy, baseline)
    const warmKiB = ((await warmHeap) ?? 0) / 1024
    const endKiB = settled.after.heapKiB ?? 0
    const growthKiB = endKiB - warmKiB
    const leaks = leakChecks(baseline, settled)
    // A reset upstream must cut the client off: a whole response would be a lie. (A client
    // that vanishes cuts itself off: nothing to check on its side.)
    const upstreamReset = kind.endsWith('upstream-reset')
    return {
      name: `faults/${kind}`,
      title: `${kind}: ${REPS.toLocaleString('en-US')} repetitions, ${FAULT_CONCURRENCY} at a time`,
      figures: [
        ['repetitions per second', Math.round(REPS / seconds)],
        ['client saw its response cut / whole', `${outcomes.cut} / ${outcomes.completed}`],
        ['proxy live heap after 10% / at the end', `${mib(warmKiB)} / ${mib(endKiB)} MiB`],
        [
          'live heap growth over the last 90%',
          `${(growthKiB / MiB).toFixed(2)} MiB (${((growthKiB * 1024) / (REPS * 0.9)).toFixed(0)} B per repetition)`,
        ],
        ...leaks.figures,
      ],
      checks: [
        check('no operation failed to start or errored', errors.count === 0, errors.detail),
        check('no client left hanging', hung.count === 0, hung.detail),
        ...(upstreamReset
          ? [
              check(
                'every client saw its transfer cut (never a whole response)',
                outcomes.completed === 0 && outcomes.cut === REPS,
                `${outcomes.cut} cut, ${outcomes.completed} whole`,
              ),
            ]
          : []),
        check(
          'the live heap does not grow with repetitions',
          growthKiB <= MiB,
          `${(growthKiB / MiB).toFixed(2)} MiB over ${Math.round(REPS * 0.9)} repetitions (1 MiB allowed)`,
        ),
        ...leaks.checks,
      ],
    }
  } finally {
    await proxy.stop()
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (process.platform !== 'linux') throw new Error('bench:soak reads /proc: Linux only')
  const results: ScenarioResult[] = []
  const started = Date.now()
  const proxyScenarios = ONLY.filter((s) => s === 'tunnels' || s === 'slowloris' || s === 'faults')
  if (proxyScenarios.length > 0) {
    const scratch = mkdtempSync(join(tmpdir(), 'isorun-bench-soak-'))
    const certs = makeCertificates(scratch, NAME)
    const up = await startUpstreamProcess(UPSTREAM, certs.cert, certs.key)
    const bench: Bench = {
      scratch,
      caFile: certs.ca,
      secureContext: tls.createSecureContext({ ca: readFileSync(certs.ca), minVersion: 'TLSv1.3' }),
      up,
    }
    try {
      if (ONLY.includes('tunnels')) results.push(await tunnels(bench))
      if (ONLY.includes('slowloris')) results.push(await slowloris(bench))
      if (ONLY.includes('faults')) results.push(...(await faults(bench)))
    } finally {
      up.stop()
      rmSync(scratch, { recursive: true, force: true })
    }
  }
  const docker = ONLY.filter(
    (s): s is DockerScenario => s === 'creates' || s === 'kill' || s === 'dockerd',
  )
  if (docker.length > 0) results.push(...(await dockerScenarios(docker, { creates: CREATES })))
  const header = [
    `bench:soak — node ${process.version}, ${readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? '?'} CPUs, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    `scenarios: ${ONLY.join(', ')}${QUICK ? ' (--quick)' : ''}; ${((Date.now() - started) / 1000).toFixed(0)} s in all`,
  ]
  process.stdout.write(
    JSON_OUT ? `${JSON.stringify({ header, results }, null, 2)}\n` : renderReport(header, results),
  )
  if (results.some((r) => r.checks.some((c) => !c.ok))) process.exitCode = 1
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    process.stderr.write(`bench:soak failed: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(2)
  },
)
