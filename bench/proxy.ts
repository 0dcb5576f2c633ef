// npm run bench:proxy — isorun's egress proxy against direct access (the
// baseline) and squid (the reference), in one run, against the same local
// upstreams. Loopback only: names such as bench.test are mapped to 127.0.0.1
// (isorun: --resolve; squid: its own hosts_file); nothing real is resolved.
//
// Figures, each a table with isorun, squid and direct, and isorun/squid:
//   1. small requests over keep-alive through the HTTP proxy: requests/s and
//      proxy CPU µs per request (utime+stime from /proc/PID/stat)
//   2. CONNECT + TLS handshake churn at concurrency 16: tunnels/s and proxy
//      CPU µs per tunnel
//   3. bulk download through a TLS tunnel: MB/s, and % of direct
//   2b. the same with a new name per tunnel (DNS cache cold; for the intercepting
//      contender, the leaf-certificate cache cold too: a leaf minted per tunnel)
//   3b. bulk download with h2 offered (the intercepting contender serves h2;
//      spliced tunnels stay HTTP/1.1, as the upstream speaks)
//   4. proxy RSS idle (after start) and under load (peak), MiB
//   5. latency a proxy adds to one small HTTPS request on a fresh connection,
//      p50 and p99, with the proxy's DNS cache cold (a new name: a real query to
//      the bench's DNS server on a loopback address) and warm, against direct
//      access (whose client looks a new name up itself) and squid
//
// "isorun intercepted" is the same proxy with TLS interception for bench.test
// (a profile with inspect: true; its CA is the bench CA, so the same clients
// trust its leaves): every tunnel is terminated and every request decided,
// logged and sent upstream over TLS again. Its rows next to the spliced ones
// are the cost of interception, in the same run.
//
// The upstreams and the load generators run in child processes (bench/lib/
// upstream.ts, bench/lib/load.ts, or wrk), so the CPU counted for a proxy is
// its own. Squid is Debian's squid-openssl with ssl_bump peek + splice; it is
// installed when missing (root) or skipped with a message.
//
// Options:
//   --duration MS         measured time per rate figure (default 5000)
//   --bulk-mb N           bulk download size (default 512)
//   --rounds N            rounds of every figure; the best counts (default 2)
//   --connections N       keep-alive connections for figure 1 (default 8)
//   --figures LIST        which figures to run: keepalive,churn,churn-cold,bulk,bulk-h2,latency (default all;
//                         memory is always shown)
//   --latency-samples N   requests per contender and DNS state in figure 5 (default 200)
//   --node-load           use the Node keep-alive generator even when wrk is installed
//   --no-squid            skip squid
//   --also-cli P1,P2      also measure other builds (paths to their isorun-proxy.mjs or cli/main.js), to A/B a change
//   --node-flags "F"      also measure isorun run as `node F …` instead of the sidecar's flags (e.g. "--max-semi-space-size=2")
//   --cpu-prof [DIR]      instead of the comparison: run isorun under node --cpu-prof, one
//                         proxy per load, and print where its time goes during the measured
//                         load (profiles kept in DIR, default $TMPDIR/isorun-bench-profiles)
//   --isorun-args "A"     with --cpu-prof: extra proxy arguments (e.g. "--no-log-allowed")

import { spawn, spawnSync } from 'node:child_process'
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  callers,
  formatSummary,
  summarize,
  type CpuProfile,
  type Window,
} from './lib/cpuprofile.js'
import type { LoadResult, LoadSpec } from './lib/load.js'
import { formatNumber } from './lib/measure.js'
import { makeCertificates } from './lib/certs.js'
import { runChildJson } from './lib/child-json.js'
import { SIDECAR_NODE_FLAGS } from '../src/runner/container-specs.js'
import { startUpstreamProcess, type Upstreams } from './lib/upstream-process.js'
import { allowOnLoopback, startIsorunProxy, type RunningProxy } from './lib/isorun-proxy.js'
import { freePort } from './lib/net.js'
import { cpuSeconds, memory, RssSampler } from './lib/procstat.js'
import { ensureSquid, startSquid } from './lib/squid.js'
import { startDnsStub, type DnsStub } from './lib/dns-stub.js'
import type { LatencyResult, LatencySpec } from './lib/latency.js'

const NAME = 'bench.test'
const LOOPBACK = '127.0.0.1'
const HERE = fileURLToPath(new URL('.', import.meta.url)) // dist/bench/
/** The sidecar's program, run as the runner runs it (SIDECAR_NODE_FLAGS): what ships is measured. */
const SIDECAR = resolve(HERE, '../isorun-proxy.mjs')
/** The CLI as tsc compiles it: for --cpu-prof, whose profiles then name readable functions and files. */
const CLI = resolve(HERE, '../src/cli/main.js')
const LOAD = join(HERE, 'lib/load.js')
const LATENCY_CLIENT = join(HERE, 'lib/latency.js')
const UPSTREAM = join(HERE, 'lib/upstream.js')

// ---------------------------------------------------------------- options

/** `--name value` or `--name=value`; '' for a flag given without a value; undefined when absent. */
function option(name: string, takesValue = true): string | undefined {
  const args = process.argv.slice(2)
  const eq = args.find((a) => a.startsWith(`${name}=`))
  if (eq !== undefined) return eq.slice(name.length + 1)
  const at = args.indexOf(name)
  if (at < 0) return undefined
  const next = args[at + 1]
  // Values may start with "--" (node flags): a value option takes the next argument as it is.
  return takesValue && next !== undefined ? next : ''
}
const DURATION_MS = Number(option('--duration') || 5000)
const BULK_BYTES = Number(option('--bulk-mb') || 512) * 1024 * 1024
const ROUNDS = Math.max(1, Number(option('--rounds') || 2))
const CONNECTIONS = Number(option('--connections') || 8)
const FIGURE_LIST = (
  option('--figures') || 'keepalive,churn,churn-cold,bulk,bulk-h2,latency'
).split(',')
const FIGURES = FIGURE_LIST.filter((f): f is Figure =>
  ['keepalive', 'churn', 'churn-cold', 'bulk', 'bulk-h2'].includes(f),
)
const LATENCY = FIGURE_LIST.includes('latency')
const LATENCY_SAMPLES = Math.max(1, Number(option('--latency-samples') || 200))
const CHURN_CONCURRENCY = 16
const NODE_LOAD = option('--node-load', false) !== undefined
const NO_SQUID = option('--no-squid', false) !== undefined
const CPU_PROF = ((): string | undefined => {
  const v = option('--cpu-prof')
  return v === undefined ? undefined : v.startsWith('--') ? '' : v
})()
const NODE_FLAGS = (option('--node-flags') ?? '').split(' ').filter(Boolean)
const ISORUN_ARGS = (option('--isorun-args') ?? '').split(' ').filter(Boolean)
/** Other builds of the CLI to measure alongside (A/B a change): paths to their cli/main.js. */
const ALSO_CLI = (option('--also-cli') ?? '').split(',').filter(Boolean)

// ---------------------------------------------------------------- setup

// ---------------------------------------------------------------- proxies under test

interface Contender {
  readonly label: string
  /** Absent for direct access. */
  readonly start?: () => Promise<RunningProxy>
}

/** The bench's DNS server, when it could be started (figure 5). */
let benchDns: DnsStub | undefined

function startIsorun(
  extra: string[],
  nodeFlags: readonly string[] = SIDECAR_NODE_FLAGS,
  cli = SIDECAR,
): Promise<RunningProxy> {
  // Subdomains of NAME are looked up at the bench's DNS server (figure 5).
  const dns = benchDns ? ['--allow', `*.${NAME}:*`, '--upstream-dns', `${benchDns.address}:53`] : []
  return startIsorunProxy([...allowOnLoopback(NAME), ...dns, ...extra], { nodeFlags, cli })
}

const INTERCEPTED = 'isorun intercepted'

/**
 * isorun intercepting bench.test: a profile with inspect: true allows it (and its
 * subdomains), and the bench CA signs the proxy's leaves and is the upstream CA.
 */
function startIntercepting(certs: { ca: string; caKey: string }): Promise<RunningProxy> {
  const dir = join(scratch, 'profiles')
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, 'bench-intercept.yaml'),
    [
      'name: bench-intercept',
      'description: every bench.test tunnel intercepted',
      'inspect: true',
      'allow:',
      `  - '${NAME}:*'`,
      `  - '*.${NAME}:*'`,
      '',
    ].join('\n'),
  )
  const dns = benchDns ? ['--upstream-dns', `${benchDns.address}:53`] : []
  return startIsorunProxy([
    '--profile',
    'bench-intercept',
    '--profiles-dir',
    dir,
    '--resolve',
    `${NAME}=${LOOPBACK}`,
    '--allow-private',
    'loopback',
    '--ca-cert',
    certs.ca,
    '--ca-key',
    certs.caKey,
    '--upstream-ca',
    certs.ca,
    ...dns,
  ])
}

// ---------------------------------------------------------------- loads

function runNodeLoad(spec: LoadSpec): Promise<LoadResult> {
  return runChildJson<LoadResult>(LOAD, spec)
}

const HAVE_WRK = !NODE_LOAD && spawnSync('wrk', ['-v']).error === undefined

/** wrk: small GETs over keep-alive connections; absolute-form through a proxy (a Lua script sets the path). */
function runWrk(spec: LoadSpec, scriptDir: string): Promise<LoadResult> {
  const authority = `${NAME}:${spec.upstream.port}`
  const script = join(scriptDir, 'wrk-proxy.lua')
  writeFileSync(
    script,
    `wrk.path = "http://${authority}/small"\nwrk.headers["Host"] = "${authority}"\n`,
  )
  const target = spec.proxy ?? spec.upstream
  const args = [
    '-t1',
    `-c${spec.concurrency ?? CONNECTIONS}`,
    `-d${Math.max(1, Math.round((spec.durationMs ?? DURATION_MS) / 1000))}s`,
    ...(spec.proxy ? ['-s', script] : []),
    `http://${target.host}:${target.port}/small`,
  ]
  return new Promise((resolveResult, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (out += c.toString()))
    child.once('error', reject)
    child.once('exit', () => {
      const m = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out)
      if (!m) return reject(new Error(`wrk: ${out}`))
      const seconds = Number(m[2]) * (m[3] === 'ms' ? 0.001 : m[3] === 'm' ? 60 : 1)
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
      const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
        out,
      )
      const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0)
      resolveResult({
        ops: Number(m[1]) - non2xx,
        seconds,
        bytes: 0,
        errors,
        ...(errors > 0 ? { firstError: out.trim().split('\n').slice(-4).join(' | ') } : {}),
      })
    })
  })
}

interface Measured extends LoadResult {
  /** Proxy CPU seconds during the measured load; undefined for direct access. */
  readonly cpu?: number
  /** The measured load's time window, µs on the monotonic clock (for --cpu-prof). */
  readonly window: Window
}

let scratch = ''
/** Why squid is not in the comparison, once known. */
let squidSkip: string | undefined

async function measure(
  spec: LoadSpec,
  proxyPid: number | undefined,
  warmup: Partial<LoadSpec> | undefined,
): Promise<Measured> {
  const run = (s: LoadSpec): Promise<LoadResult> =>
    s.mode === 'keepalive' && HAVE_WRK ? runWrk(s, scratch) : runNodeLoad(s)
  if (warmup) await run({ ...spec, ...warmup })
  const before = proxyPid ? cpuSeconds(proxyPid) : 0
  const fromUs = Number(process.hrtime.bigint() / 1000n)
  const result = await run(spec)
  const toUs = Number(process.hrtime.bigint() / 1000n)
  const after = proxyPid ? cpuSeconds(proxyPid) : 0
  if (result.errors > 0)
    process.stderr.write(
      `bench: ${spec.mode}: ${result.errors} errors (first: ${result.firstError})\n`,
    )
  return { ...result, window: { fromUs, toUs }, ...(proxyPid ? { cpu: after - before } : {}) }
}

interface Row {
  readonly label: string
  readonly latency?: LatencyResult[string]
  readonly keepalive?: Measured
  readonly churn?: Measured
  readonly 'churn-cold'?: Measured
  readonly bulk?: Measured
  readonly 'bulk-h2'?: Measured
  readonly idleKiB?: number
  readonly peakKiB?: number
}

type Figure = 'keepalive' | 'churn' | 'churn-cold' | 'bulk' | 'bulk-h2'

/** The load for one figure, and its warm-up (first round only). */
function loadFor(
  figure: Figure,
  up: Upstreams,
  proxy: RunningProxy | undefined,
): [LoadSpec, Partial<LoadSpec>] {
  const via = proxy ? { proxy: { host: LOOPBACK, port: proxy.port } } : {}
  const caFile = join(scratch, 'ca.pem')
  const tlsUp = { host: LOOPBACK, port: up.tlsPort }
  if (figure === 'keepalive')
    return [
      {
        mode: 'keepalive',
        ...via,
        upstream: { host: LOOPBACK, port: up.httpPort },
        name: NAME,
        concurrency: CONNECTIONS,
        durationMs: DURATION_MS,
      },
      { durationMs: 2000 },
    ]
  if (figure === 'churn' || figure === 'churn-cold')
    return [
      {
        mode: figure,
        ...via,
        upstream: tlsUp,
        name: NAME,
        concurrency: CHURN_CONCURRENCY,
        durationMs: DURATION_MS,
        caFile,
      },
      { durationMs: 1500 },
    ]
  return [
    { mode: figure, ...via, upstream: tlsUp, name: NAME, bytes: BULK_BYTES, caFile },
    { bytes: 64 * 1024 * 1024 },
  ]
}

/** The better of two runs of one figure: higher rate, and (independently) lower proxy CPU per op. */
function better(a: Measured | undefined, b: Measured): Measured {
  if (!a) return b
  const best = (a.ops / a.seconds >= b.ops / b.seconds ? a : b) as Measured
  const cpu = (m: Measured): number => (m.cpu ?? 0) / Math.max(1, m.bytes || m.ops)
  const leanest = cpu(a) <= cpu(b) ? a : b
  // Keep the best run's rate and the leanest run's CPU per op (scaled to the best run's ops).
  return {
    ...best,
    ...(best.cpu === undefined ? {} : { cpu: cpu(leanest) * Math.max(1, best.bytes || best.ops) }),
    errors: a.errors + b.errors,
  }
}

/**
 * All proxies run at once (idle ones cost nothing), so each figure measures the
 * contenders back to back, in a rotating order, for ROUNDS rounds; the best
 * round counts. That keeps a busy machine's drift from favouring whoever ran first.
 */
async function compare(contenders: Contender[], up: Upstreams): Promise<Row[]> {
  const running: { c: Contender; proxy?: RunningProxy; idleKiB?: number; sampler?: RssSampler }[] =
    []
  try {
    for (const c of contenders) {
      let proxy: RunningProxy | undefined
      try {
        proxy = c.start ? await c.start() : undefined
      } catch (err) {
        if (c.label !== 'squid') throw err
        squidSkip = `failed to start: ${(err as Error).message}`
        continue
      }
      running.push({ c, ...(proxy ? { proxy } : {}) })
    }
    await new Promise((r) => setTimeout(r, 1000)) // settle after start
    for (const r of running) {
      if (!r.proxy) continue
      r.idleKiB = memory(r.proxy.pid)?.rssKiB
      r.sampler = new RssSampler(r.proxy.pid)
    }
    const results = new Map<string, Partial<Record<Figure, Measured>>>()
    const latency = LATENCY ? await measureLatency(running, up) : undefined
    for (let round = 0; round < ROUNDS; round++) {
      for (const figure of FIGURES) {
        for (let i = 0; i < running.length; i++) {
          const r = running[(i + round) % running.length] as (typeof running)[number]
          process.stderr.write(`bench: round ${round + 1}/${ROUNDS}: ${figure}: ${r.c.label}\n`)
          const [spec, warmup] = loadFor(figure, up, r.proxy)
          const m = await measure(spec, r.proxy?.pid, round === 0 ? warmup : undefined)
          const so = results.get(r.c.label) ?? {}
          so[figure] = better(so[figure], m)
          results.set(r.c.label, so)
        }
      }
    }
    return contenders.flatMap((c) => {
      const r = running.find((x) => x.c === c)
      const m = results.get(c.label) ?? {}
      const l = latency?.[c.label]
      if (!r || (!l && Object.keys(m).length === 0)) return []
      return [
        {
          label: c.label,
          ...m,
          ...(l ? { latency: l } : {}),
          idleKiB: r.idleKiB,
          peakKiB: r.sampler?.stop(),
        },
      ]
    })
  } finally {
    for (const r of running) await r.proxy?.stop()
  }
}

/** Figure 5: every running contender, sample by sample in turns, in a child process. */
async function measureLatency(
  running: readonly { c: Contender; proxy?: RunningProxy }[],
  up: Upstreams,
): Promise<LatencyResult | undefined> {
  if (!benchDns) return undefined
  process.stderr.write(`bench: latency: ${LATENCY_SAMPLES} requests per contender, cold and warm\n`)
  const spec: LatencySpec = {
    contenders: running.map((r) => ({
      label: r.c.label,
      ...(r.proxy ? { proxy: { host: LOOPBACK, port: r.proxy.port } } : {}),
    })),
    upstream: { host: LOOPBACK, port: up.tlsPort },
    zone: NAME,
    dnsServer: `${benchDns.address}:53`,
    samples: LATENCY_SAMPLES,
    caFile: join(scratch, 'ca.pem'),
  }
  const before = questionsInZone(benchDns)
  const result = await runChildJson<LatencyResult>(LATENCY_CLIENT, spec)
  latencyQuestions = (questionsInZone(benchDns) - before) / (LATENCY_SAMPLES + 1) / running.length
  return result
}

/** DNS questions per cold request, on average over the contenders (shows "cold" really asked). */
let latencyQuestions = 0

// ---------------------------------------------------------------- report

function table(title: string, header: string[], rows: (string | number | undefined)[][]): string {
  const cells = rows.map((r) =>
    r.map((v) =>
      v === undefined
        ? '–'
        : typeof v === 'number'
          ? Number.isInteger(v)
            ? v.toLocaleString('en-US')
            : formatNumber(v)
          : v,
    ),
  )
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]): string =>
    r
      .map((v, i) => (i === 0 ? v.padEnd(widths[i] as number) : v.padStart(widths[i] as number)))
      .join('  ')
  return [title, '-'.repeat(title.length), line(header), ...cells.map(line)].join('\n')
}

const ratio = (a: number | undefined, b: number | undefined): string | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : `${(a / b).toFixed(2)}x`

const rate = (m: Measured | undefined): number | undefined =>
  m === undefined ? undefined : m.ops / m.seconds
const cpuPer = (m: Measured | undefined): number | undefined =>
  m?.cpu === undefined || m.ops === 0 ? undefined : (m.cpu * 1e6) / m.ops
const cores = (m: Measured | undefined): string | undefined =>
  m?.cpu === undefined ? undefined : (m.cpu / m.seconds).toFixed(2)
const mbps = (m: Measured | undefined): number | undefined =>
  m === undefined ? undefined : m.bytes / 1e6 / m.seconds
const cpuPerMB = (m: Measured | undefined): number | undefined =>
  m?.cpu === undefined || m.bytes === 0 ? undefined : (m.cpu * 1e6) / (m.bytes / 1e6)
const mib = (kib: number | undefined): number | undefined =>
  kib === undefined ? undefined : kib / 1024

/** a ≥ b (or a ≤ b when `lower`), undefined when either is missing. */
function atLeast(a: number | undefined, b: number | undefined, lower = false): boolean | undefined {
  if (a === undefined || b === undefined) return undefined
  return lower ? a <= b : a >= b
}

/** p-th percentile (0..100) of samples, by nearest rank. */
function percentile(samples: readonly number[], p: number): number | undefined {
  if (samples.length === 0) return undefined
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

function latencyTable(rows: Row[], direct: Row | undefined): string {
  if (!benchDns) return `Figure 5 — latency: SKIPPED — ${dnsSkip ?? 'no DNS server'}`
  const cell = (r: Row | undefined, state: 'cold' | 'warm', p: number): number | undefined =>
    r?.latency ? percentile(r.latency[state], p) : undefined
  const added = (r: Row, state: 'cold' | 'warm', p: number): number | undefined => {
    const own = cell(r, state, p)
    const base = cell(direct, state, p)
    return own === undefined || base === undefined ? undefined : own - base
  }
  const proxies = rows.filter((r) => r !== direct && r.latency)
  return table(
    `Figure 5 — one small HTTPS request on a fresh connection, ms (${LATENCY_SAMPLES} per cell; cold: a new name, ${latencyQuestions.toFixed(1)} DNS questions per request on average; warm: a name asked before)`,
    ['', 'p50 cold', 'p99 cold', 'p50 warm', 'p99 warm', 'errors'],
    [
      ...rows
        .filter((r) => r.latency)
        .map((r) => [
          r.label,
          cell(r, 'cold', 50),
          cell(r, 'cold', 99),
          cell(r, 'warm', 50),
          cell(r, 'warm', 99),
          r.latency?.errors,
        ]),
      ...proxies.map((r) => [
        `${r.label} adds`,
        added(r, 'cold', 50),
        added(r, 'cold', 99),
        added(r, 'warm', 50),
        added(r, 'warm', 99),
        undefined,
      ]),
    ],
  )
}

function report(rows: Row[]): string {
  const direct = rows.find((r) => r.label === 'direct')
  const squid = rows.find((r) => r.label === 'squid')
  const isorun = rows.find((r) => r.label === 'isorun')
  const proxies = rows.filter((r) => r !== direct)
  const out: string[] = []
  const vsSquid = (f: (r: Row) => number | undefined): string | undefined =>
    isorun && squid ? ratio(f(isorun), f(squid)) : undefined
  const gen = HAVE_WRK ? 'wrk -t1' : 'Node load generator'

  if (FIGURES.includes('keepalive'))
    out.push(
      table(
        `Figure 1 — small GETs over keep-alive (${CONNECTIONS} connections, ${gen}, ${DURATION_MS / 1000} s)`,
        ['', 'requests/s', 'proxy CPU µs/request', 'proxy CPU (cores)', 'errors'],
        [
          ...rows.map((r) => [
            r.label,
            rate(r.keepalive),
            cpuPer(r.keepalive),
            cores(r.keepalive),
            r.keepalive?.errors,
          ]),
          [
            'isorun / squid',
            vsSquid((r) => rate(r.keepalive)),
            vsSquid((r) => cpuPer(r.keepalive)),
            undefined,
            undefined,
          ],
        ],
      ),
    )
  if (FIGURES.includes('churn'))
    out.push(
      table(
        `Figure 2 — CONNECT + TLS handshake churn (concurrency ${CHURN_CONCURRENCY}, ${DURATION_MS / 1000} s; each tunnel: CONNECT, handshake, one GET, close)`,
        ['', 'tunnels/s', 'proxy CPU µs/tunnel', 'proxy CPU (cores)', 'errors'],
        [
          ...rows.map((r) => [
            r.label,
            rate(r.churn),
            cpuPer(r.churn),
            cores(r.churn),
            r.churn?.errors,
          ]),
          [
            'isorun / squid',
            vsSquid((r) => rate(r.churn)),
            vsSquid((r) => cpuPer(r.churn)),
            undefined,
            undefined,
          ],
        ],
      ),
    )
  const intercepted = rows.find((r) => r.label === INTERCEPTED)
  const vsSpliced = (f: (r: Row) => number | undefined): string | undefined =>
    isorun && intercepted ? ratio(f(intercepted), f(isorun)) : undefined
  if (FIGURES.includes('churn-cold'))
    out.push(
      table(
        `Figure 2b — as figure 2 with a new name per tunnel (DNS cache cold; intercepted: a leaf minted per tunnel)`,
        ['', 'tunnels/s', 'proxy CPU µs/tunnel', 'proxy CPU (cores)', 'errors'],
        [
          ...rows.map((r) => [
            r.label,
            rate(r['churn-cold']),
            cpuPer(r['churn-cold']),
            cores(r['churn-cold']),
            r['churn-cold']?.errors,
          ]),
          [
            'intercepted / isorun',
            vsSpliced((r) => rate(r['churn-cold'])),
            vsSpliced((r) => cpuPer(r['churn-cold'])),
            undefined,
            undefined,
          ],
        ],
      ),
    )
  if (FIGURES.includes('bulk')) {
    const pctDirect = (r: Row): string | undefined => {
      const base = mbps(direct?.bulk)
      const own = mbps(r.bulk)
      return base && own !== undefined ? `${((100 * own) / base).toFixed(0)}%` : undefined
    }
    out.push(
      table(
        `Figure 3 — bulk download through a TLS tunnel (${BULK_BYTES / 1024 / 1024} MiB, one connection)`,
        ['', 'MB/s', '% of direct', 'proxy CPU s', 'proxy CPU µs/MB', 'errors'],
        [
          ...rows.map((r) => [
            r.label,
            mbps(r.bulk),
            pctDirect(r),
            r.bulk?.cpu?.toFixed(2),
            cpuPerMB(r.bulk),
            r.bulk?.errors,
          ]),
          [
            'isorun / squid',
            vsSquid((r) => mbps(r.bulk)),
            undefined,
            undefined,
            vsSquid((r) => cpuPerMB(r.bulk)),
            undefined,
          ],
        ],
      ),
    )
  }
  if (FIGURES.includes('bulk-h2'))
    out.push(
      table(
        `Figure 3b — bulk download with h2 offered (${BULK_BYTES / 1024 / 1024} MiB; only the intercepting proxy answers h2, the rest stay HTTP/1.1)`,
        ['', 'MB/s', 'proxy CPU s', 'proxy CPU µs/MB', 'errors'],
        [
          ...rows.map((r) => [
            r.label,
            mbps(r['bulk-h2']),
            r['bulk-h2']?.cpu?.toFixed(2),
            cpuPerMB(r['bulk-h2']),
            r['bulk-h2']?.errors,
          ]),
          [
            'intercepted / isorun',
            vsSpliced((r) => mbps(r['bulk-h2'])),
            undefined,
            vsSpliced((r) => cpuPerMB(r['bulk-h2'])),
            undefined,
          ],
        ],
      ),
    )
  if (intercepted && isorun)
    out.push(
      table(
        'Interception cost (isorun intercepted / isorun spliced, this run)',
        ['', 'intercepted / spliced'],
        [
          ['tunnels/s, leaf cache warm (fig. 2)', vsSpliced((r) => rate(r.churn))],
          ['CPU µs/tunnel, leaf cache warm (fig. 2)', vsSpliced((r) => cpuPer(r.churn))],
          ['tunnels/s, leaf cache cold (fig. 2b)', vsSpliced((r) => rate(r['churn-cold']))],
          ['CPU µs/tunnel, leaf cache cold (fig. 2b)', vsSpliced((r) => cpuPer(r['churn-cold']))],
          ['bulk MB/s over HTTP/1.1 (fig. 3)', vsSpliced((r) => mbps(r.bulk))],
          ['bulk MB/s, h2 to the client (fig. 3b)', vsSpliced((r) => mbps(r['bulk-h2']))],
        ],
      ),
    )
  if (LATENCY) out.push(latencyTable(rows, direct))
  out.push(
    table(
      'Figure 4 — proxy memory (RSS, MiB; idle = 1 s after start, load = peak of samples and VmHWM)',
      ['', 'RSS idle', 'RSS under load'],
      [
        ...proxies.map((r) => [r.label, mib(r.idleKiB), mib(r.peakKiB)]),
        ['isorun / squid', vsSquid((r) => r.idleKiB), vsSquid((r) => r.peakKiB)],
      ],
    ),
  )
  if (isorun) {
    const goals: [string, boolean | undefined][] = [
      ['requests/s ≥ squid', atLeast(rate(isorun.keepalive), rate(squid?.keepalive))],
      ['CPU µs/request ≤ squid', atLeast(cpuPer(isorun.keepalive), cpuPer(squid?.keepalive), true)],
      ['tunnels/s ≥ squid', atLeast(rate(isorun.churn), rate(squid?.churn))],
      ['CPU µs/tunnel ≤ squid', atLeast(cpuPer(isorun.churn), cpuPer(squid?.churn), true)],
      ['bulk MB/s ≥ squid', atLeast(mbps(isorun.bulk), mbps(squid?.bulk))],
      ['RSS under load ≤ squid', atLeast(isorun.peakKiB, squid?.peakKiB, true)],
      ['RSS idle ≤ 48 MiB', atLeast(isorun.idleKiB, 48 * 1024, true)],
    ]
    out.push(
      [
        'Goals (isorun as the sidecar runs, this run)',
        '-------------------------------------------',
        ...goals.map(([g, ok]) => `${ok === undefined ? 'n/a ' : ok ? 'met ' : 'MISS'}  ${g}`),
      ].join('\n'),
    )
  }
  return `${out.join('\n\n')}\n`
}

// ---------------------------------------------------------------- profiling

async function profile(up: Upstreams, dir: string): Promise<void> {
  for (const figure of FIGURES) {
    const out = join(dir, figure)
    rmSync(out, { recursive: true, force: true })
    mkdirSync(out, { recursive: true })
    const proxy = await startIsorun(
      ISORUN_ARGS,
      [
        ...(NODE_FLAGS.length > 0 ? NODE_FLAGS : SIDECAR_NODE_FLAGS),
        '--cpu-prof',
        '--cpu-prof-dir',
        out,
      ],
      CLI,
    )
    let result: Measured
    try {
      process.stderr.write(`bench: profiling isorun under the ${figure} load…\n`)
      const [spec, warmup] = loadFor(figure, up, proxy)
      result = await measure(spec, proxy.pid, warmup)
    } finally {
      await proxy.stop()
    }
    const file = readdirSync(out).find((f) => f.endsWith('.cpuprofile'))
    if (!file) throw new Error(`no .cpuprofile written in ${out}`)
    const path = join(out, file)
    const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
    // Only the measured load counts: start-up and warm-up are cut off.
    const summary = summarize(p, result.window)
    const perOp = figure === 'bulk' ? result.bytes / 1e6 : result.ops
    const unit = figure === 'bulk' ? 'MB' : figure === 'churn' ? 'tunnel' : 'request'
    const cpuPerOp = result.cpu === undefined ? undefined : (result.cpu * 1e6) / Math.max(1, perOp)
    process.stdout.write(
      [
        '',
        formatSummary(`isorun, ${figure} load (${path})`, summary, 30, perOp, unit),
        `  measured: ${formatNumber(figure === 'bulk' ? result.bytes / 1e6 / result.seconds : result.ops / result.seconds)} ${unit === 'MB' ? 'MB' : `${unit}s`}/s, ` +
          `${cpuPerOp === undefined ? '–' : formatNumber(cpuPerOp)} µs CPU per ${unit} (all threads, from /proc, under the profiler).`,
        '  The profile samples the main thread by wall clock: a native call that wakes another',
        '  process or thread (socket and fs writes) also carries the time the proxy was preempted.',
        ' heaviest call paths into the top native/self functions:',
        ...summary.byFunction
          .filter(
            (f) => !f.name.startsWith('(garbage collector)') && !f.name.startsWith('(program)'),
          )
          .slice(0, 4)
          .map((f) => callers(p, f.name, 2, 7, result.window)),
        '',
      ].join('\n'),
    )
  }
}

// ---------------------------------------------------------------- main

/** Why figure 5 has no DNS server, once known. */
let dnsSkip: string | undefined

/** The bench's DNS server on port 53 of a loopback address of its own (squid asks no other port). */
/** Questions the bench's DNS server was asked about NAME and its subdomains. */
function questionsInZone(dns: DnsStub): number {
  return dns.questions().filter((q) => q.name.endsWith(NAME)).length
}

async function startDnsIfPossible(): Promise<DnsStub | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const address = `127.53.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`
    try {
      // Every name in NAME's zone is on loopback, for 300 s; others do not exist.
      const zone = (name: string) =>
        name === NAME || name.endsWith(`.${NAME}`) ? { a: [LOOPBACK], ttl: 300 } : undefined
      return await startDnsStub({ address, port: 53, zone })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      dnsSkip = `cannot listen on ${address}:53 (${code ?? String(err)}${code === 'EACCES' ? ': needs root' : ''})`
      if (code !== 'EADDRINUSE') return undefined
    }
  }
  return undefined
}

async function main(): Promise<void> {
  if (process.platform !== 'linux') throw new Error('bench:proxy reads /proc: Linux only')
  scratch = mkdtempSync(join(tmpdir(), 'isorun-bench-proxy-'))
  chmodSync(scratch, 0o755) // squid runs as its own user (proxy) and reads its files under here
  const certs = makeCertificates(scratch, NAME)
  const up = await startUpstreamProcess(UPSTREAM, certs.cert, certs.key)
  if (LATENCY && CPU_PROF === undefined) benchDns = await startDnsIfPossible()
  try {
    if (CPU_PROF !== undefined) {
      await profile(up, resolve(CPU_PROF || join(tmpdir(), 'isorun-bench-profiles')))
      return
    }
    squidSkip = NO_SQUID ? 'skipped (--no-squid)' : ensureSquid()
    const contenders: Contender[] = [{ label: 'direct' }]
    if (!squidSkip) {
      contenders.push({
        label: 'squid',
        start: async () => {
          const port = await freePort()
          return {
            port,
            ...(await startSquid({
              dir: join(scratch, 'squid'),
              port,
              names: [`.${NAME}`],
              ...(benchDns ? { dnsServer: benchDns.address } : {}),
              hosts: new Map([[NAME, LOOPBACK]]),
              caCert: certs.ca,
              caKey: certs.caKey,
            })),
          }
        },
      })
    }
    contenders.push(
      { label: 'isorun', start: () => startIsorun([]) },
      { label: 'isorun --no-log-allowed', start: () => startIsorun(['--no-log-allowed']) },
      { label: INTERCEPTED, start: () => startIntercepting(certs) },
    )
    for (const cli of ALSO_CLI)
      contenders.push({
        label: `isorun (${cli})`,
        start: () => startIsorun([], SIDECAR_NODE_FLAGS, resolve(cli)),
      })
    if (NODE_FLAGS.length > 0)
      contenders.push({
        label: `isorun (node ${NODE_FLAGS.join(' ')})`,
        start: () => startIsorun([], NODE_FLAGS),
      })
    const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
    const rows = await compare(contenders, up)
    const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
    const squidVersion = squidSkip
      ? undefined
      : /Version (\S+)/.exec(spawnSync('squid', ['-v'], { encoding: 'utf8' }).stdout)?.[1]
    process.stdout.write(
      [
        `bench:proxy — node ${process.version}, ${readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? '?'} CPUs, loopback upstreams (${NAME} → ${LOOPBACK})`,
        `squid: ${squidSkip ? `SKIPPED — ${squidSkip}` : `${squidVersion} (squid-openssl, ssl_bump peek + splice, access_log to /dev/null)`}`,
        `isorun: the sidecar as the runner starts it, node ${SIDECAR_NODE_FLAGS.join(' ')} dist/isorun-proxy.mjs proxy --allow bench.test:* (decision log on stdout → /dev/null)`,
        `${ROUNDS} round(s) per figure, contenders back to back in rotating order; the best round counts`,
        `load average before/after: ${loadBefore} / ${loadAfter} (other work on the machine skews rates and CPU)`,
        '',
        '',
      ].join('\n'),
    )
    process.stdout.write(report(rows))
  } finally {
    up.stop()
    await benchDns?.close()
    rmSync(scratch, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:proxy failed: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  },
)
