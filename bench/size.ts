// npm run bench:size — the proxy sidecar's memory, variant by variant, and
// what each variant costs in throughput, all in one run on this machine.
//
// Every variant is started with the sidecar's own arguments (proxyArguments()
// from the runner's container specs, on loopback ports), then sent what the
// runner sends a new sandbox's proxy through the admin API: the claude-code
// profile's resolved rules and a fresh interception CA. After that it sits
// idle for a moment, and its idle memory is read from /proc:
//
//   RSS       VmRSS: anonymous + file-backed (mostly the node binary, whose pages
//             every sidecar of the image shares through the page cache)
//   private   Private_Clean + Private_Dirty (smaps_rollup): the pages only this
//             process maps, i.e. what one more sidecar adds
//
// Then a short load through it (bench/lib/load.js in a child process, to a
// local upstream: loopback only): small requests over 8 keep-alive
// connections, and CONNECT + TLS tunnels at concurrency 16, with the proxy's
// CPU per request or tunnel, and its peak RSS (VmHWM) after both. Each ratio
// compares a variant with the `bundle` row (the bundle with the flags the
// sidecar had before this benchmark) measured in the same round, and is the
// median over the rounds; memory is the median of the rounds, the rates shown
// the best round. A variant whose proxy dies or fails requests shows FAILS and why.
//
// Variants: `node alone` (an idle timer: the floor of any Node program on this
// machine), `tsc` (the CLI as tsc compiles it: the sidecar before the bundle),
// the bundle (dist/isorun-proxy.mjs) as built and not minified (built here for
// the comparison), the bundle without or with one more Node/V8 flag or
// variable each, and `sidecar`: exactly what the runner starts
// (SIDECAR_NODE_FLAGS), which doubles as a control: with the bundle row's flags,
// its ratios show the run-to-run noise.
//
// Options:
//   --rounds N       rounds, each measuring every variant once (default 2)
//   --duration MS    load per throughput figure (default 2000)
//   --no-load        memory only
//   --only NAMES     comma-separated variant names (the bundle row is always measured)
//   --json           one JSON object instead of tables

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { compilePolicy, type PolicySpec } from '../src/policy/index.js'
import { policySpecOf, ProfileCatalogue } from '../src/profiles/index.js'
import {
  proxyArguments,
  SIDECAR_NODE_FLAGS,
  type ProxyListenFlags,
} from '../src/runner/container-specs.js'
import { ProxyAdmin } from '../src/runner/proxy-admin.js'
import { createCertificateAuthority } from '../src/tls/ca.js'
import { makeCertificates } from './lib/certs.js'
import { runChildJson } from './lib/child-json.js'
import { BUILT_CLI, REPO_ROOT } from './lib/host-runner.js'
import type { LoadResult, LoadSpec } from './lib/load.js'
import { freePort } from './lib/net.js'
import { cpuSeconds, memory } from './lib/procstat.js'
import { memoryDetail, type MemoryDetail } from './lib/smaps.js'
import { startUpstreamProcess, type Upstreams } from './lib/upstream-process.js'

const NAME = 'bench.test'
const LOOPBACK = '127.0.0.1'
const BUNDLE = join(REPO_ROOT, 'dist/isorun-proxy.mjs')
const SCRATCH = join(REPO_ROOT, 'dist/bench-size') // inside the repo: bundles find node_modules
const LOAD = join(REPO_ROOT, 'dist/bench/lib/load.js')
const UPSTREAM = join(REPO_ROOT, 'dist/bench/lib/upstream.js')
/** How long a proxy sits idle after its policy and CA before its memory is read. */
const SETTLE_MS = 2000
/** Load before each measured one, so that every variant is measured warm. */
const WARMUP_MS = 500
/** The flags the sidecar had before this benchmark (in NODE_OPTIONS). */
const BEFORE_FLAGS = ['--max-semi-space-size=1']

// ---------------------------------------------------------------- options

function option(name: string): string | undefined {
  const args = process.argv.slice(2)
  const at = args.indexOf(name)
  if (at < 0) return undefined
  return args[at + 1] ?? ''
}
const has = (name: string): boolean => process.argv.slice(2).includes(name)
const ROUNDS = Math.max(1, Number(option('--rounds') ?? 2))
const DURATION_MS = Number(option('--duration') ?? 2000)
const LOADS = !has('--no-load')
const ONLY = option('--only')?.split(',').filter(Boolean)
const JSON_OUT = has('--json')

// ---------------------------------------------------------------- variants

interface Variant {
  readonly name: string
  /** The script node runs; undefined for `node alone`. */
  readonly program?: string
  readonly nodeFlags: readonly string[]
  readonly env?: Readonly<Record<string, string>>
}

const BASELINE = 'bundle'

function variants(): Variant[] {
  const bundle = (name: string, flags: string[], env?: Record<string, string>): Variant => ({
    name,
    program: BUNDLE,
    nodeFlags: [...BEFORE_FLAGS, ...flags],
    ...(env ? { env } : {}),
  })
  const all: Variant[] = [
    { name: 'node alone', nodeFlags: [] },
    { name: 'tsc', program: BUILT_CLI, nodeFlags: BEFORE_FLAGS },
    bundle(BASELINE, []),
    { ...bundle('bundle (not minified)', []), program: join(SCRATCH, 'plain.mjs') },
    { ...bundle('bundle (default semi-space)', []), nodeFlags: [] },
    bundle('+ --max-old-space-size=64', ['--max-old-space-size=64']),
    bundle('+ --jitless', ['--jitless']),
    bundle('+ --single-threaded', ['--single-threaded']),
    bundle('+ --v8-pool-size=1', ['--v8-pool-size=1']),
    bundle('+ UV_THREADPOOL_SIZE=1', [], { UV_THREADPOOL_SIZE: '1' }),
    bundle('+ MALLOC_ARENA_MAX=2', [], { MALLOC_ARENA_MAX: '2' }),
    { name: 'sidecar', program: BUNDLE, nodeFlags: SIDECAR_NODE_FLAGS },
  ]
  return ONLY ? all.filter((v) => v.name === BASELINE || ONLY.includes(v.name)) : all
}

/** Builds the bundle only this benchmark runs (the product one comes from npm run build). */
async function buildComparisonBundles(): Promise<void> {
  rmSync(SCRATCH, { recursive: true, force: true })
  mkdirSync(SCRATCH, { recursive: true })
  const script = pathToFileURL(join(REPO_ROOT, 'scripts/bundle-proxy.mjs')).href
  const { bundleProxy } = (await import(script)) as {
    bundleProxy(options: { outfile?: string; minify?: boolean }): Promise<void>
  }
  await bundleProxy({ outfile: join(SCRATCH, 'plain.mjs'), minify: false })
}

// ---------------------------------------------------------------- one proxy

interface Started {
  readonly child: ChildProcess
  readonly httpPort: number
  /** From spawn to the proxy's listening line (undefined for `node alone`). */
  readonly startMs?: number
  /** What the process wrote on stderr so far. */
  stderr(): string
  stop(): Promise<void>
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r))
}

async function stopChild(child: ChildProcess): Promise<void> {
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  child.kill('SIGTERM')
  await exited(child)
  clearTimeout(timer)
}

/** A clean environment: no NODE_OPTIONS or proxy variables of this shell. */
function childEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env))
    if (k !== 'NODE_OPTIONS' && !/_proxy$/i.test(k)) env[k] = v
  return { ...env, NODE_ENV: 'production', ...extra }
}

/** Starts a variant as the runner starts a sidecar, and sends it what the runner sends. */
async function startVariant(variant: Variant, spec: PolicySpec): Promise<Started> {
  if (!variant.program) {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], {
      stdio: 'ignore',
      env: childEnv(),
    })
    await new Promise((r) => setTimeout(r, SETTLE_MS))
    return { child, httpPort: 0, stderr: () => '', stop: () => stopChild(child) }
  }
  const ports = await Promise.all(
    ['http', 'socks', 'dns', 'tls', 'plain', 'admin'].map(async (k) => [k, await freePort()]),
  )
  const port = Object.fromEntries(ports) as Record<keyof ProxyListenFlags, number>
  const listen = Object.fromEntries(
    Object.entries(port).map(([k, p]) => [k, `${LOOPBACK}:${p}`]),
  ) as ProxyListenFlags
  const token = randomBytes(12).toString('hex')
  const args = [
    ...proxyArguments(
      {
        id: 'bench-size',
        logAllowed: true,
        allowPrivate: ['loopback'],
        blocked: [],
        // The runner's defaults (ISORUN_PROXY_DNS_TTL_MIN/_MAX).
        dnsTtl: { minSeconds: 5, maxSeconds: 300 },
      },
      listen,
    ),
    '--resolve',
    `${NAME}=${LOOPBACK}`,
  ]
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, [...variant.nodeFlags, variant.program, ...args], {
    // The decision log is discarded, as Docker's log driver would take it.
    stdio: ['ignore', 'ignore', 'pipe'],
    env: childEnv({ ISORUN_ADMIN_TOKEN: token, ...variant.env }),
  })
  let stderr = ''
  // Started: the proxy prints its listening line once every listener, the admin API included, is up.
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${variant.name}: no listening line in 30 s`)),
      30_000,
    )
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString()
      if (!stderr.includes('listening: ')) return
      clearTimeout(timer)
      resolve()
    })
    child.once('exit', (code) =>
      reject(new Error(`${variant.name} exited with ${code}: ${stderr}`)),
    )
  })
  await listening
  const startMs = performance.now() - spawnedAt
  const admin = new ProxyAdmin(`http://${LOOPBACK}:${port.admin}`, token)
  await admin.waitUntilHealthy(30_000)
  await admin.setPolicy(spec, { networkProfile: 'claude-code' })
  await admin.setInterception({
    ca: await createCertificateAuthority({ commonName: 'isorun bench:size' }),
  })
  await new Promise((r) => setTimeout(r, SETTLE_MS))
  return {
    child,
    httpPort: port.http,
    startMs,
    stderr: () => stderr,
    stop: () => stopChild(child),
  }
}

// ---------------------------------------------------------------- load

function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return runChildJson<LoadResult>(LOAD, spec)
}

/** The two loads, straight to the upstream (the measured ones add the proxy). */
function loads(up: Upstreams, caFile: string): { keepalive: LoadSpec; churn: LoadSpec } {
  const upstream = (port: number): LoadSpec['upstream'] => ({ host: LOOPBACK, port })
  const common = { name: NAME, durationMs: DURATION_MS }
  return {
    keepalive: { ...common, mode: 'keepalive', upstream: upstream(up.httpPort), concurrency: 8 },
    churn: { ...common, mode: 'churn', upstream: upstream(up.tlsPort), concurrency: 16, caFile },
  }
}

interface Rate {
  /** Operations per second. */
  readonly rate: number
  /** Proxy CPU µs per operation. */
  readonly cpuUs: number
  readonly errors: number
  /** What went wrong first, when something did (a variant that breaks the proxy shows here). */
  readonly firstError?: string
}

async function measureLoad(pid: number, spec: LoadSpec, warmup: Partial<LoadSpec>): Promise<Rate> {
  await runLoad({ ...spec, ...warmup })
  const before = cpuSeconds(pid)
  const r = await runLoad(spec)
  const cpu = cpuSeconds(pid) - before
  return {
    rate: r.ops / r.seconds,
    cpuUs: (cpu / Math.max(1, r.ops)) * 1e6,
    errors: r.errors,
    ...(r.firstError ? { firstError: r.firstError } : {}),
  }
}

// ---------------------------------------------------------------- rounds

interface Sample {
  readonly idle: MemoryDetail
  readonly startMs?: number
  /** Why the proxy died under load, when it did. */
  readonly crash?: string
  /** VmHWM after the loads: the most resident memory the process ever held. */
  readonly peakKiB?: number
  readonly keepalive?: Rate
  readonly churn?: Rate
}

async function measureVariant(
  variant: Variant,
  spec: PolicySpec,
  up: Upstreams | undefined,
  caFile: string,
): Promise<Sample> {
  const started = await startVariant(variant, spec)
  try {
    const pid = started.child.pid!
    const idle = memoryDetail(pid)
    if (!idle) throw new Error(`${variant.name}: the process is gone`)
    const startMs = started.startMs
    if (!up || startMs === undefined) return { idle, ...(startMs ? { startMs } : {}) }
    const proxy = { host: LOOPBACK, port: started.httpPort }
    const warmup = { durationMs: WARMUP_MS }
    const direct = loads(up, caFile)
    const keepalive = await measureLoad(pid, { ...direct.keepalive, proxy }, warmup)
    const churn = await measureLoad(pid, { ...direct.churn, proxy }, warmup)
    if (started.child.exitCode !== null || started.child.signalCode !== null)
      return { idle, startMs, keepalive, churn, crash: crashReason(started.stderr()) }
    const peakKiB = memory(pid)?.hwmKiB
    return { idle, startMs, keepalive, churn, ...(peakKiB ? { peakKiB } : {}) }
  } finally {
    await started.stop()
  }
}

/** The error line of a dead process's stderr (Node prints the stack after it), or its last line. */
function crashReason(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '')
  return lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.at(-1) ?? 'no output'
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** One load's figures for a variant over all rounds. */
interface LoadFigures {
  /** The best round's operations per second. */
  readonly rate: number
  /** The lowest proxy CPU per operation of any round, µs. */
  readonly cpuUs: number
  /** Rate against the baseline's in the same round, median over the rounds. */
  readonly rateRatio: number
  /** CPU per operation against the baseline's in the same round, median over the rounds. */
  readonly cpuRatio: number
  readonly errors: number
  readonly firstError?: string
}

function loadFigures(
  rates: (Rate | undefined)[],
  baseline: (Rate | undefined)[],
): LoadFigures | undefined {
  const rounds = rates.flatMap((r, i) => (r ? [{ r, base: baseline[i] }] : []))
  if (rounds.length === 0) return undefined
  const against = (f: (r: Rate) => number): number => {
    const ratios = rounds.flatMap(({ r, base }) => (base && f(base) > 0 ? [f(r) / f(base)] : []))
    return ratios.length > 0 ? median(ratios) : NaN
  }
  const firstError = rounds.find(({ r }) => r.firstError)?.r.firstError
  return {
    rate: Math.max(...rounds.map(({ r }) => r.rate)),
    cpuUs: Math.min(...rounds.map(({ r }) => r.cpuUs)),
    rateRatio: against((r) => r.rate),
    cpuRatio: against((r) => r.cpuUs),
    errors: rounds.reduce((n, { r }) => n + r.errors, 0),
    ...(firstError ? { firstError } : {}),
  }
}

interface Row {
  readonly name: string
  /** Variables and node flags, as the variant was started. */
  readonly flags: string
  /** Idle memory, medians of the rounds (MiB). */
  readonly rssMiB: number
  readonly anonMiB: number
  readonly fileMiB: number
  readonly privateMiB: number
  /** From spawn to listening, median of the rounds (ms). */
  readonly startMs?: number
  /** Peak RSS (VmHWM) after the loads, median of the rounds (MiB). */
  readonly peakMiB?: number
  readonly keepalive?: LoadFigures
  readonly churn?: LoadFigures
  /** Why the proxy died under load in some round, when it did. */
  readonly crash?: string
}

function summarize(variant: Variant, samples: Sample[], baseline: Sample[]): Row {
  const mib = (values: number[]): number => median(values) / 1024
  const peaks = samples.flatMap((s) => (s.peakKiB ? [s.peakKiB] : []))
  const starts = samples.flatMap((s) => (s.startMs ? [s.startMs] : []))
  const crash = samples.find((s) => s.crash)?.crash
  const keepalive = loadFigures(
    samples.map((s) => s.keepalive),
    baseline.map((s) => s.keepalive),
  )
  const churn = loadFigures(
    samples.map((s) => s.churn),
    baseline.map((s) => s.churn),
  )
  return {
    name: variant.name,
    flags: [
      ...Object.entries(variant.env ?? {}).map(([k, v]) => `${k}=${v}`),
      ...variant.nodeFlags,
    ].join(' '),
    rssMiB: mib(samples.map((s) => s.idle.rssKiB)),
    anonMiB: mib(samples.map((s) => s.idle.anonKiB)),
    fileMiB: mib(samples.map((s) => s.idle.fileKiB)),
    privateMiB: mib(samples.map((s) => s.idle.privateKiB)),
    ...(peaks.length > 0 ? { peakMiB: mib(peaks) } : {}),
    ...(starts.length > 0 ? { startMs: median(starts) } : {}),
    ...(keepalive ? { keepalive } : {}),
    ...(churn ? { churn } : {}),
    ...(crash ? { crash } : {}),
  }
}

// ---------------------------------------------------------------- report

function loadCells(figures: LoadFigures | undefined): string[] {
  if (!figures) return ['', '', '']
  if (figures.errors > 0) return ['FAILS', '', '']
  return [figures.rate.toFixed(0), figures.rateRatio.toFixed(2), figures.cpuRatio.toFixed(2)]
}

function printTable(rows: Row[]): void {
  const header = [
    'variant',
    'RSS',
    'anon',
    'file',
    'private',
    'peak',
    'start ms',
    'req/s',
    '×rate',
    '×CPU',
    'tunnels/s',
    '×rate',
    '×CPU',
  ]
  const body = rows.map((r) => [
    r.name,
    r.rssMiB.toFixed(1),
    r.anonMiB.toFixed(1),
    r.fileMiB.toFixed(1),
    r.privateMiB.toFixed(1),
    r.peakMiB?.toFixed(1) ?? '',
    r.startMs?.toFixed(0) ?? '',
    ...loadCells(r.keepalive),
    ...loadCells(r.churn),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  console.log(line(header))
  for (const b of body) console.log(line(b))
  console.log('\nStarted with:')
  for (const r of rows) if (r.flags) console.log(`  ${r.name}: ${r.flags}`)
  const failures = rows.flatMap((r) =>
    [
      ['keep-alive', r.keepalive],
      ['tunnels', r.churn],
    ].flatMap(([load, f]) => {
      const figures = f as LoadFigures | undefined
      return figures && figures.errors > 0
        ? [`  ${r.name}, ${load as string}: ${figures.errors} errors, first: ${figures.firstError}`]
        : []
    }),
  )
  const crashes = rows.flatMap((r) => (r.crash ? [`  ${r.name}: the proxy died: ${r.crash}`] : []))
  if (failures.length > 0)
    console.log(`\nFailed under load:\n${[...crashes, ...failures].join('\n')}`)
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const list = variants()
  await buildComparisonBundles()
  const catalogue = new ProfileCatalogue()
  const profile = catalogue.get('claude-code')
  if (!profile) throw new Error('the built-in claude-code profile is missing')
  const base = policySpecOf(profile)
  // The sandbox's usual rules plus the benchmark's upstream (on loopback, any port).
  const spec: PolicySpec = {
    ...base,
    allow: [...base.allow, { rule: `${NAME}:*`, from: 'bench' }],
  }
  compilePolicy(spec, { allowSpecial: ['loopback'] }) // fails here, not in every proxy
  let up: Upstreams | undefined
  const caFile = join(SCRATCH, 'ca.pem')
  if (LOADS) {
    const certs = makeCertificates(SCRATCH, NAME)
    up = await startUpstreamProcess(UPSTREAM, certs.cert, certs.key)
    // Direct loads first: the upstream's warm-up is not paid by the first variant measured.
    for (const spec of Object.values(loads(up, caFile)))
      await runLoad({ ...spec, durationMs: WARMUP_MS * 2 })
  }
  const samples = new Map<string, Sample[]>()
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Forward, then backward (and so on): a busy machine's drift over a round evens out
      // over two, instead of always favouring the variants measured first.
      const order = round % 2 === 0 ? list : [...list].reverse()
      for (const variant of order) {
        process.stderr.write(`bench:size: round ${round + 1}/${ROUNDS}: ${variant.name}\n`)
        const sample = await measureVariant(variant, spec, up, caFile)
        samples.set(variant.name, [...(samples.get(variant.name) ?? []), sample])
      }
    }
  } finally {
    up?.stop()
  }
  const baseline = samples.get(BASELINE) ?? []
  const rows = list.map((v) => summarize(v, samples.get(v.name) ?? [], baseline))
  if (JSON_OUT) {
    const settings = { rounds: ROUNDS, durationMs: DURATION_MS, baseline: BASELINE }
    console.log(JSON.stringify({ ...settings, rows }, null, 1))
    return
  }
  console.log(
    [
      '',
      `Sidecar memory in MiB, idle after its policy and CA (median of ${ROUNDS} rounds):`,
      '  RSS = anon + file; private = pages no other process maps (what one more sidecar adds)',
      ...(LOADS
        ? [
            `  peak = VmHWM after the loads. Loads: ${DURATION_MS} ms each, best round shown;`,
            `  ×rate and ×CPU (proxy CPU per operation) against "${BASELINE}" in the same round`,
            '  (median of the rounds): below 1.00 is slower, or cheaper in CPU.',
            ...(SIDECAR_NODE_FLAGS.join(' ') === BEFORE_FLAGS.join(' ')
              ? [
                  `  "sidecar" runs with the flags of "${BASELINE}": its ratios are this run's noise.`,
                ]
              : []),
          ]
        : []),
      '',
    ].join('\n'),
  )
  printTable(rows)
}

main().catch((err: unknown) => {
  console.error(`bench:size: ${(err as Error).stack ?? String(err)}`)
  process.exit(1)
})
