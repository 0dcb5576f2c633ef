// npm run bench:sandbox — sandbox lifecycle latency and the egress-proxy
// sidecar's memory, end to end through the SDK against a real runner on the
// local Docker engine.
//
//   1. latency: N sandboxes one after another (after warm-up ones that do not
//      count): create (the API call), the first exec (`true`) right after it,
//      create + first exec, destroy; p50/p95/max/mean.
//   2. where a create goes: every measured sandbox's timeline from outside
//      the runner (SDK timestamps, the engine's event stream, the proxy's log
//      lines with the engine's timestamps, the containers' StartedAt, the
//      runner's own `sandbox created` ms), as phases with p50/p95/mean.
//   3. sidecar memory: the proxy's node process VmRSS (and the container's
//      cgroup memory) a few seconds after creation, then after a burst of
//      curl requests through the proxy that it refuses.
//   4. the Docker floor: the same engine calls without isorun (two
//      containers on an internal network, sequential and concurrent starts).
//
// Network: loopback (the runner API), the engine's socket, and containers this
// bench creates. The burst only names targets the proxy refuses without
// sending anything anywhere: example.com (not in claude-code: denied by
// name, before any resolution) and, when the bench runs its own runner,
// allowed.isorun-bench.invalid, allowed by name through a live policy update
// but mapped to 127.0.0.1 in the proxy's /etc/hosts (ISORUN_PROXY_EXTRA_HOSTS),
// so it resolves locally to loopback and is refused as a special address.
//
// Runner: its own (bench/lib/sandbox-runner.ts, a child process; the real
// runner without start-up recovery, so other runners' sandboxes on a shared
// engine are never touched), or the one at ISORUN_URL (+ ISORUN_API_KEY).
//
// Options:
//   --count N          measured sandboxes (default 20)
//   --warmup N         warm-up sandboxes, not counted (default 2)
//   --keep             keep the measured sandboxes alive until all are created,
//                      then destroy them (default: create, exec, destroy each in turn)
//   --rss N            sandboxes for the memory figures (default 3)
//   --idle-ms MS       wait after creation before the idle reading (default 5000)
//   --burst N          curl requests in the burst (default 200)
//   --floor N          Docker floor rounds (default 5; 0 skips)
//   --rebuild          rebuild isorun:local (scripts/ci/build-product-image.sh) even if present
//   --json FILE        also write every sample as JSON
// Env: ISORUN_URL, ISORUN_API_KEY (use a running runner), ISORUN_BENCH_IMAGE
//      (default isorun-ci/sandbox:bookworm), ISORUN_PROXY_IMAGE (default isorun:local).

import { spawnSync, fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs'
import net from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Isorun, type Sandbox } from 'isorun'
import {
  Docker,
  dockerMessage,
  isNotFound,
  removeContainer,
  removeNetwork,
} from '../src/runner/docker.js'
import {
  networkName,
  proxyName,
  sandboxName,
  trustWriterName,
} from '../src/runner/container-specs.js'
import {
  containerLogLines,
  EventRecorder,
  hostsMaps,
  sidecarMemory,
  startedAt,
  type EngineEvent,
  type SidecarMemory,
} from './lib/docker-probe.js'
import { floorRound, type FloorRound } from './lib/docker-floor.js'
import { formatNumber, percentile, printResults } from './lib/measure.js'

const HERE = fileURLToPath(new URL('.', import.meta.url)) // dist/bench/
const ROOT = resolve(HERE, '../..')
const RUNNER_ENTRY = join(HERE, 'lib/sandbox-runner.js')

const PROFILE = 'claude-code'
const IMAGE = process.env.ISORUN_BENCH_IMAGE || 'isorun-ci/sandbox:bookworm'
const DEFAULT_SANDBOX_IMAGE = 'isorun-ci/sandbox:bookworm'
const PROXY_IMAGE = process.env.ISORUN_PROXY_IMAGE || 'isorun:local'
/** A name no resolver knows; our proxies map it to loopback in /etc/hosts. */
const LOCAL_NAME = 'allowed.isorun-bench.invalid'
/** Safety net: the runner destroys a sandbox of ours by itself after this long. */
const SANDBOX_TIMEOUT_MS = 15 * 60_000

const GOAL_CREATE_TO_EXEC_P50_MS = 1500
const GOAL_SIDECAR_IDLE_MIB = 64

// ---------------------------------------------------------------- options

function option(name: string): string | undefined {
  const at = process.argv.indexOf(name)
  if (at < 0) return undefined
  const next = process.argv[at + 1]
  return next && !next.startsWith('--') ? next : ''
}
function intOption(name: string, fallback: number): number {
  const raw = option(name)
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} "${raw}" must be a whole number`)
  return n
}
const COUNT = Math.max(1, intOption('--count', 20))
const WARMUP = intOption('--warmup', 2)
const KEEP = option('--keep') !== undefined
const RSS_COUNT = intOption('--rss', 3)
const IDLE_MS = intOption('--idle-ms', 5000)
const BURST = Math.max(4, intOption('--burst', 200))
const FLOOR_ROUNDS = intOption('--floor', 5)
const REBUILD = option('--rebuild') !== undefined
const JSON_FILE = option('--json') || undefined

// ---------------------------------------------------------------- small helpers

function now(): number {
  return performance.timeOrigin + performance.now()
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const say = (text: string): void => void process.stdout.write(`${text}\n`)
const mib = (kib: number): number => kib / 1024

interface Dist {
  readonly n: number
  readonly p50: number
  readonly p95: number
  readonly max: number
  readonly mean: number
}
function dist(values: readonly number[]): Dist {
  const v = values.filter((x) => Number.isFinite(x))
  return {
    n: v.length,
    p50: percentile(v, 50),
    p95: percentile(v, 95),
    max: v.length ? Math.max(...v) : NaN,
    mean: v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN,
  }
}

/** A table of distributions: one row per measure, columns p50 p95 max mean (+ an extra column). */
function printDistributions(
  title: string,
  unit: string,
  rows: readonly { label: string; values: readonly number[]; extra?: string }[],
  columns: readonly (keyof Dist)[] = ['p50', 'p95', 'max', 'mean'],
  extraHeader = '',
): void {
  const width = Math.max(...rows.map((r) => r.label.length), 10)
  const cell = (s: string): string => s.padStart(9)
  const fmt = (n: number): string => (Number.isFinite(n) ? formatNumber(n) : 'n/a')
  const head = `${''.padEnd(width)}  ${columns.map((c) => cell(c)).join('')}${extraHeader ? `  ${extraHeader}` : ''}`
  const lines = [
    `${title} (${unit})`,
    '-'.repeat(title.length + unit.length + 3),
    head,
    ...rows.map((r) => {
      const d = dist(r.values)
      return `${r.label.padEnd(width)}  ${columns.map((c) => cell(fmt(d[c]))).join('')}${r.extra ? `  ${r.extra}` : ''}`
    }),
  ]
  say(`${lines.join('\n')}\n`)
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = net.createServer()
    server.once('error', fail)
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => ok(port))
    })
  })
}

// ---------------------------------------------------------------- images

async function imageExists(docker: Docker, image: string): Promise<boolean> {
  try {
    await docker.getImage(image).inspect()
    return true
  } catch (err) {
    if (isNotFound(err)) return false
    throw err
  }
}

function runScript(script: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync(join(ROOT, script), args, {
    stdio: 'inherit',
    env: { ...process.env, ...env },
  })
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')} failed (exit ${r.status})`)
}

async function ensureImages(docker: Docker, ownRunner: boolean): Promise<void> {
  if (!(await imageExists(docker, IMAGE))) {
    if (IMAGE !== DEFAULT_SANDBOX_IMAGE)
      throw new Error(
        `sandbox image ${IMAGE} (ISORUN_BENCH_IMAGE) is not present; build or load it first`,
      )
    say(
      `images: building ${IMAGE} with scripts/ci/build-base-images.sh sandbox (a minute or two the first time)`,
    )
    runScript('scripts/ci/build-base-images.sh', ['sandbox'])
  }
  if (ownRunner) {
    const present = await imageExists(docker, PROXY_IMAGE)
    if (!present || REBUILD) {
      say(
        `images: ${present ? 'rebuilding' : 'building'} ${PROXY_IMAGE} with scripts/ci/build-product-image.sh` +
          `${present ? '' : ' (a few minutes the first time: base image, npm ci)'}`,
      )
      runScript('scripts/ci/build-product-image.sh', [], { ISORUN_IMAGE: PROXY_IMAGE })
    }
  }
  const describe = async (image: string): Promise<string> => {
    const info = await docker.getImage(image).inspect()
    const rev = info.Config?.Labels?.['org.opencontainers.image.revision']
    return `${image} ${info.Id.slice(7, 19)}, built ${info.Created.slice(0, 19)}Z${rev ? `, revision ${rev}` : ''}`
  }
  say(`images: ${await describe(IMAGE)}`)
  if (ownRunner) say(`        ${await describe(PROXY_IMAGE)}`)
}

// ---------------------------------------------------------------- runner

interface RunnerHandle {
  readonly url: string
  readonly apiKey: string | undefined
  readonly own: boolean
  /** The runner's own figure per sandbox id (its `sandbox created` log line), own runner only. */
  readonly createdMs: Map<string, number>
  stop(): Promise<void>
}

async function startOwnRunner(): Promise<RunnerHandle> {
  const port = await freePort()
  const stateDir = mkdtempSync(join(tmpdir(), 'isorun-bench-sandbox-'))
  const logFile = join(stateDir, 'runner.log')
  const apiKey = randomBytes(32).toString('hex')
  const extraHosts = [process.env.ISORUN_PROXY_EXTRA_HOSTS ?? '', `${LOCAL_NAME}:127.0.0.1`]
    .filter((s) => s !== '')
    .join(',')
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ISORUN_LISTEN: `127.0.0.1:${port}`,
    ISORUN_API_KEY: apiKey,
    ISORUN_STATE_DIR: stateDir,
    ISORUN_PULL_IMAGES: 'false',
    ISORUN_PROXY_EXTRA_HOSTS: extraHosts,
  }
  delete env.ISORUN_AUTH
  delete env.ISORUN_URL
  // Detached: Ctrl-C reaches the bench only, which destroys its sandboxes and then stops the runner.
  const child: ChildProcess = fork(RUNNER_ENTRY, [], {
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: true,
  })
  const createdMs = new Map<string, number>()
  let rest = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    appendFileSync(logFile, chunk)
    const lines = (rest + chunk.toString('utf8')).split('\n')
    rest = lines.pop() ?? ''
    for (const line of lines) {
      try {
        const entry = JSON.parse(line) as { msg?: string; sandbox?: string; ms?: number }
        if (entry.msg === 'sandbox created' && entry.sandbox && typeof entry.ms === 'number')
          createdMs.set(entry.sandbox, entry.ms)
      } catch {
        // not JSON
      }
    }
  })
  child.stderr!.on('data', (chunk: Buffer) => appendFileSync(logFile, chunk))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const started = new Promise<void>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`the bench runner did not start in 30 s (log: ${logFile})`)),
      30_000,
    )
    child.once('message', () => {
      clearTimeout(timer)
      ok()
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      fail(new Error(`the bench runner exited with ${code} at start (log: ${logFile})`))
    })
  })
  try {
    await started
  } catch (err) {
    child.kill('SIGTERM')
    throw err
  }
  say(
    `runner: own, pid ${child.pid}, http://127.0.0.1:${port} (API key generated; state and log in ${stateDir})`,
  )
  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    own: true,
    createdMs,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await Promise.race([exited, sleep(90_000)])
      }
      rmSync(stateDir, { recursive: true, force: true })
    },
  }
}

function externalRunner(): RunnerHandle {
  const url = process.env.ISORUN_URL as string
  say(`runner: the one at ${url} (ISORUN_URL)`)
  return {
    url,
    apiKey: process.env.ISORUN_API_KEY || undefined,
    own: false,
    createdMs: new Map(),
    stop: async () => undefined,
  }
}

// ---------------------------------------------------------------- our sandboxes, and cleaning them up

class Tracker {
  readonly live = new Map<string, Sandbox>()
  private readonly pending = new Set<Promise<unknown>>()
  stopping = false
  /** Ids we created that could not be destroyed. */
  readonly leftovers: string[] = []

  constructor(
    private readonly client: Isorun,
    private readonly docker: Docker,
  ) {}

  async create(options: Parameters<Isorun['create']>[0]): Promise<Sandbox> {
    if (this.stopping) throw new Error('interrupted')
    const p = this.client.create(options)
    const settled = p.then(
      (s) => void this.live.set(s.id, s),
      () => undefined,
    )
    this.pending.add(settled)
    void settled.then(() => this.pending.delete(settled))
    const sandbox = await p
    this.live.set(sandbox.id, sandbox)
    return sandbox
  }

  async destroy(sandbox: Sandbox): Promise<void> {
    await sandbox.destroy()
    this.live.delete(sandbox.id)
  }

  /** Destroys every sandbox we made (waiting for creates in flight); by name through Docker if the API fails. */
  async cleanup(): Promise<void> {
    this.stopping = true
    const deadline = Date.now() + 60_000
    while (this.pending.size > 0 && Date.now() < deadline)
      await Promise.race([...this.pending, sleep(1000)])
    if (this.live.size > 0)
      process.stderr.write(`cleanup: destroying ${[...this.live.keys()].join(' ')}\n`)
    for (const [id, sandbox] of [...this.live]) {
      try {
        await sandbox.destroy()
        this.live.delete(id)
        continue
      } catch (err) {
        process.stderr.write(
          `cleanup: destroying ${id} through the API failed (${(err as Error).message}); removing its objects\n`,
        )
      }
      try {
        await this.removeById(id)
        this.live.delete(id)
      } catch (err) {
        this.leftovers.push(id)
        process.stderr.write(`cleanup: could not remove sandbox ${id}: ${dockerMessage(err)}\n`)
      }
    }
  }

  /** Removes the containers and network of one of OUR sandboxes, checking its label first. */
  private async removeById(id: string): Promise<void> {
    for (const name of [sandboxName(id), proxyName(id)]) {
      try {
        const info = await this.docker.getContainer(name).inspect()
        if (info.Config.Labels?.['isorun.sandbox'] === id) await removeContainer(this.docker, name)
      } catch (err) {
        if (!isNotFound(err)) throw err
      }
    }
    try {
      const info = await this.docker.getNetwork(networkName(id)).inspect()
      if ((info as { Labels?: Record<string, string> }).Labels?.['isorun.sandbox'] === id)
        await removeNetwork(this.docker, networkName(id))
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }
}

// ---------------------------------------------------------------- latency

interface LatencySample {
  readonly id: string
  readonly t0: number
  readonly t1: number
  readonly t2: number
  t3: number
  t4: number
  readonly proxyStartedAt: number
  readonly sandboxStartedAt: number
  readonly proxyListening: number
  readonly policyApplied: number
  readonly runnerMs: number | undefined
}

async function createAndExec(
  tracker: Tracker,
  docker: Docker,
  runner: RunnerHandle,
): Promise<{ sandbox: Sandbox; sample: LatencySample }> {
  const t0 = now()
  const sandbox = await tracker.create({
    image: IMAGE,
    networkProfile: PROFILE,
    timeoutMs: SANDBOX_TIMEOUT_MS,
  })
  const t1 = now()
  const r = await sandbox.exec('true')
  const t2 = now()
  if (r.exitCode !== 0)
    throw new Error(`exec true in ${sandbox.id} exited ${r.exitCode}: ${r.stderr}`)
  // Read what only exists while the sandbox does (outside the timed sections).
  const id = sandbox.id
  const [logs, proxyStartedAt, sandboxStartedAt] = await Promise.all([
    containerLogLines(docker, proxyName(id)),
    startedAt(docker, proxyName(id)),
    startedAt(docker, sandboxName(id)),
  ])
  const at = (msg: string): number =>
    logs.find((l) => l.text.includes(`"msg":"${msg}"`))?.time ?? NaN
  return {
    sandbox,
    sample: {
      id,
      t0,
      t1,
      t2,
      t3: NaN,
      t4: NaN,
      proxyStartedAt,
      sandboxStartedAt,
      proxyListening: at('proxy started'),
      policyApplied: at('policy replaced'),
      runnerMs: runner.createdMs.get(id),
    },
  }
}

async function destroyTimed(
  tracker: Tracker,
  sandbox: Sandbox,
  sample: LatencySample,
): Promise<void> {
  sample.t3 = now()
  await tracker.destroy(sandbox)
  sample.t4 = now()
}

async function latencyPhase(
  tracker: Tracker,
  docker: Docker,
  runner: RunnerHandle,
): Promise<{ warmups: LatencySample[]; samples: LatencySample[] }> {
  const warmups: LatencySample[] = []
  for (let i = 0; i < WARMUP; i++) {
    const { sandbox, sample } = await createAndExec(tracker, docker, runner)
    await destroyTimed(tracker, sandbox, sample)
    warmups.push(sample)
    say(
      `  warm-up ${i + 1}/${WARMUP}: create ${Math.round(sample.t1 - sample.t0)} ms (not counted)`,
    )
  }
  const samples: LatencySample[] = []
  const kept: { sandbox: Sandbox; sample: LatencySample }[] = []
  for (let i = 0; i < COUNT; i++) {
    const made = await createAndExec(tracker, docker, runner)
    const s = made.sample
    samples.push(s)
    if (KEEP) kept.push(made)
    else await destroyTimed(tracker, made.sandbox, s)
    say(
      `  ${String(i + 1).padStart(2)}/${COUNT} ${s.id}: create ${Math.round(s.t1 - s.t0)} ms, first exec ${Math.round(s.t2 - s.t1)} ms` +
        `${KEEP ? '' : `, destroy ${Math.round(s.t4 - s.t3)} ms`}${s.runnerMs !== undefined ? ` (runner: ${s.runnerMs} ms)` : ''}`,
    )
  }
  for (const { sandbox, sample } of kept) await destroyTimed(tracker, sandbox, sample)
  return { warmups, samples }
}

// ---------------------------------------------------------------- timelines

interface Phases {
  readonly create: Record<string, number>
  readonly exec: Record<string, number>
  readonly destroy: Record<string, number>
}

const CREATE_PHASES = [
  'API, policy, image checks, network create',
  'proxy container create',
  'connect proxy to the egress network',
  'proxy container start (engine)',
  'proxy process start-up (node, to listening)',
  'health poll + policy PUT',
  // The runner creates the sandbox container, gives it its trust files (through a writer
  // container) and starts it while the proxy starts and boots.
  'sandbox container create (alongside the three above)',
  'trust files: image bundle read, written to the volume',
  'sandbox container start (engine)',
  'the later of both → API response',
] as const
const EXEC_PHASES = [
  'API → exec created',
  'exec start + `true` runs',
  'exit → API response',
] as const
const DESTROY_PHASES = [
  'API → both containers dead (SIGKILL)',
  'dead → both containers removed (engine clean-up)',
  'remove the network',
  'network gone → API response',
] as const

/** Phases of one sandbox from the engine's events; undefined where an event is missing. */
function phasesOf(s: LatencySample, events: readonly EngineEvent[]): Phases | undefined {
  const net = networkName(s.id)
  const px = proxyName(s.id)
  const sb = sandboxName(s.id)
  const mine = events.filter((e) => e.time >= s.t0 - 100 && e.time <= s.t4 + 5000)
  const find = (
    type: string,
    action: string,
    name: string,
    after = s.t0 - 100,
  ): EngineEvent | undefined =>
    mine.find(
      (e) => e.type === type && e.action.startsWith(action) && e.name === name && e.time >= after,
    )
  const netCreate = find('network', 'create', net)
  const pCreate = find('container', 'create', px)
  const egress = pCreate
    ? mine.find(
        (e) =>
          e.type === 'network' &&
          e.action === 'connect' &&
          e.container === pCreate.id &&
          e.name !== net,
      )
    : undefined
  const sCreate = find('container', 'create', sb)
  const trustWritten = find('container', 'extract-to-dir', trustWriterName(s.id))
  const sStart = find('container', 'start', sb)
  const execCreate = find('container', 'exec_create', sb, s.t1 - 50)
  const execDie = find('container', 'exec_die', sb, s.t1 - 50)
  const sDie = find('container', 'die', sb, s.t3 - 50)
  const pDie = find('container', 'die', px, s.t3 - 50)
  const sDestroy = find('container', 'destroy', sb, s.t3 - 50)
  const pDestroy = find('container', 'destroy', px, s.t3 - 50)
  const netDestroy = find('network', 'destroy', net, s.t3 - 50)
  const needed = [
    netCreate,
    pCreate,
    egress,
    sCreate,
    trustWritten,
    sStart,
    execCreate,
    execDie,
    sDie,
    pDie,
    sDestroy,
    pDestroy,
    netDestroy,
  ]
  if (needed.some((e) => e === undefined)) return undefined
  if (
    ![s.proxyStartedAt, s.proxyListening, s.policyApplied, s.sandboxStartedAt].every(
      Number.isFinite,
    )
  )
    return undefined
  // Two tracks once the proxy container is on the egress network: it starts, its process
  // boots and gets the policy; meanwhile the sandbox container is created, given its trust
  // files and started.
  const durations = [
    netCreate!.time - s.t0,
    pCreate!.time - netCreate!.time,
    egress!.time - pCreate!.time,
    s.proxyStartedAt - egress!.time,
    s.proxyListening - s.proxyStartedAt,
    s.policyApplied - s.proxyListening,
    sCreate!.time - egress!.time,
    trustWritten!.time - sCreate!.time,
    s.sandboxStartedAt - trustWritten!.time,
    s.t1 - Math.max(s.policyApplied, s.sandboxStartedAt),
  ]
  const create: Record<string, number> = {}
  CREATE_PHASES.forEach((label, i) => (create[label] = durations[i]!))
  const containersDead = Math.max(sDie!.time, pDie!.time)
  const containersGone = Math.max(sDestroy!.time, pDestroy!.time)
  return {
    create,
    exec: {
      [EXEC_PHASES[0]]: execCreate!.time - s.t1,
      [EXEC_PHASES[1]]: execDie!.time - execCreate!.time,
      [EXEC_PHASES[2]]: s.t2 - execDie!.time,
    },
    destroy: {
      [DESTROY_PHASES[0]]: containersDead - s.t3,
      [DESTROY_PHASES[1]]: containersGone - containersDead,
      [DESTROY_PHASES[2]]: netDestroy!.time - containersGone,
      [DESTROY_PHASES[3]]: s.t4 - netDestroy!.time,
    },
  }
}

// ---------------------------------------------------------------- sidecar memory

interface MemorySample {
  readonly id: string
  readonly idle: SidecarMemory
  readonly after: SidecarMemory
  readonly burst: { readonly requests: number; readonly outcomes: string; readonly seconds: number }
  readonly decisions: Record<string, number>
}

/** `sh -c` script: N rounds over the URLs, 4 curls at a time through the proxy (the sandbox's *_PROXY). */
const BURST_SCRIPT =
  'n=$1; shift; i=0; while [ $i -lt $n ]; do for u in "$@"; do echo "$u"; done; i=$((i+1)); done | ' +
  'xargs -P 4 -n 1 curl -s -o /dev/null --max-time 5 -w "%{http_code}/%{http_connect}\\n" | sort | uniq -c'

async function memoryPhase(
  tracker: Tracker,
  docker: Docker,
  runner: RunnerHandle,
): Promise<MemorySample[]> {
  if (RSS_COUNT === 0) return []
  const made: { sandbox: Sandbox; at: number }[] = []
  for (let i = 0; i < RSS_COUNT; i++) {
    const sandbox = await tracker.create({
      image: IMAGE,
      networkProfile: PROFILE,
      timeoutMs: SANDBOX_TIMEOUT_MS,
    })
    made.push({ sandbox, at: now() })
  }
  const wait = made[made.length - 1]!.at + IDLE_MS - now()
  say(`  ${RSS_COUNT} sandboxes up; idle reading ${IDLE_MS} ms after creation`)
  if (wait > 0) await sleep(wait)
  const idle = new Map<string, SidecarMemory>()
  for (const { sandbox } of made)
    idle.set(sandbox.id, await sidecarMemory(docker, proxyName(sandbox.id)))

  const samples: MemorySample[] = []
  for (const { sandbox } of made) {
    const urls = ['https://example.com/', 'http://example.com/']
    // Allowed by name, resolved from the proxy's /etc/hosts to 127.0.0.1, refused as loopback.
    // Only when the mapping is verifiably there: otherwise the name would go to a real resolver.
    if (
      runner.own &&
      (await hostsMaps(docker, proxyName(sandbox.id), LOCAL_NAME)) === '127.0.0.1'
    ) {
      await sandbox.updateNetwork({ network: { include: [PROFILE], allow: [LOCAL_NAME] } })
      urls.push(`https://${LOCAL_NAME}/`, `http://${LOCAL_NAME}/`)
    }
    const rounds = Math.ceil(BURST / urls.length)
    const t = now()
    const out = await sandbox.exec(['/bin/sh', '-c', BURST_SCRIPT, 'sh', String(rounds), ...urls], {
      timeoutMs: 300_000,
    })
    const seconds = (now() - t) / 1000
    const after = await sidecarMemory(docker, proxyName(sandbox.id))
    const events = await sandbox.networkEvents({ limit: 1000 })
    const decisions: Record<string, number> = {}
    for (const e of events) {
      const key = `${e.action} ${e.host} (${e.reason})`
      decisions[key] = (decisions[key] ?? 0) + 1
    }
    const outcomes = out.stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().replace(/\s+/, '× '))
      .join(', ')
    samples.push({
      id: sandbox.id,
      idle: idle.get(sandbox.id)!,
      after,
      burst: { requests: rounds * urls.length, outcomes, seconds },
      decisions,
    })
    say(
      `  ${sandbox.id}: idle ${mib(idle.get(sandbox.id)!.rssKiB).toFixed(1)} MiB, after ${rounds * urls.length} requests ` +
        `in ${seconds.toFixed(1)} s ${mib(after.rssKiB).toFixed(1)} MiB (peak ${mib(after.hwmKiB).toFixed(1)}); curl (http/connect code): ${outcomes}`,
    )
    const allowed = events.filter((e) => e.action === 'allow')
    if (allowed.length > 0)
      say(`  WARNING: the proxy allowed ${allowed.length} requests: ${allowed[0]!.host}`)
  }
  for (const { sandbox } of made) await tracker.destroy(sandbox)
  return samples
}

// ---------------------------------------------------------------- main

async function hostDescription(docker: Docker): Promise<string> {
  const info = (await docker.info()) as {
    ServerVersion?: string
    Driver?: string
    CgroupVersion?: string
    NCPU?: number
    KernelVersion?: string
  }
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')
  return (
    `host: ${cpus().length} CPUs, load ${load}; Docker ${info.ServerVersion}, ${info.Driver}, cgroup v${info.CgroupVersion}, ` +
    `kernel ${info.KernelVersion}; node ${process.version}`
  )
}

async function main(): Promise<number> {
  const docker = new Docker()
  try {
    await docker.ping()
  } catch (err) {
    throw new Error(
      `cannot reach the Docker engine (${dockerMessage(err)}); run scripts/ci/ensure-docker.sh`,
    )
  }
  say('isorun sandbox benchmark')
  say(await hostDescription(docker))
  const external = Boolean(process.env.ISORUN_URL)
  await ensureImages(docker, !external)

  const runner = external ? externalRunner() : await startOwnRunner()
  const client = new Isorun({
    url: runner.url,
    ...(runner.apiKey ? { apiKey: runner.apiKey } : {}),
  })
  const tracker = new Tracker(client, docker)
  const recorder = new EventRecorder(docker)
  const run = randomBytes(4).toString('hex')

  let interrupted = false
  let cleaning: Promise<void> | undefined
  const shutdown = async (): Promise<void> => {
    cleaning ??= (async () => {
      await tracker.cleanup()
      recorder.stop()
      await runner.stop()
    })()
    return cleaning
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) {
      process.stderr.write(
        `${signal} again: exiting now; sandboxes possibly left: ${[...tracker.live.keys()].join(' ') || 'none'}\n`,
      )
      process.exit(130)
    }
    interrupted = true
    process.stderr.write(
      `\n${signal}: destroying the sandboxes this bench created, then stopping (again to force)\n`,
    )
    void shutdown().then(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  let samples: LatencySample[] = []
  let warmups: LatencySample[] = []
  let memory: MemorySample[] = []
  const floor: FloorRound[] = []
  try {
    await recorder.start()
    say(
      `\nlatency: ${WARMUP} warm-up + ${COUNT} sandboxes, one after another (${IMAGE}, ${PROFILE}${KEEP ? ', all kept until the end' : ''})`,
    )
    const latency = await latencyPhase(tracker, docker, runner)
    warmups = latency.warmups
    samples = latency.samples
    say(`\nsidecar memory: ${RSS_COUNT} sandboxes`)
    memory = await memoryPhase(tracker, docker, runner)
    if (FLOOR_ROUNDS > 0) {
      say(`\nDocker floor: ${FLOOR_ROUNDS} rounds without isorun`)
      for (let i = 0; i < FLOOR_ROUNDS && !interrupted; i++)
        floor.push(await floorRound(docker, IMAGE, run))
    }
    await recorder.settle()
  } finally {
    await shutdown()
  }
  if (tracker.leftovers.length > 0)
    process.stderr.write(`WARNING: sandboxes left behind: ${tracker.leftovers.join(' ')}\n`)

  report(samples, warmups, memory, floor, recorder.events, runner)
  say(
    `host after: load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  )
  if (JSON_FILE) {
    writeFileSync(JSON_FILE, JSON.stringify({ warmups, samples, memory, floor }, null, 2))
    say(`samples written to ${JSON_FILE}`)
  }
  return 0
}

function report(
  samples: readonly LatencySample[],
  warmups: readonly LatencySample[],
  memory: readonly MemorySample[],
  floor: readonly FloorRound[],
  events: readonly EngineEvent[],
  runner: RunnerHandle,
): void {
  say('')
  const create = samples.map((s) => s.t1 - s.t0)
  const firstExec = samples.map((s) => s.t2 - s.t1)
  const total = samples.map((s) => s.t2 - s.t0)
  const destroy = samples.map((s) => s.t4 - s.t3)
  const runnerMs = samples.flatMap((s) => (s.runnerMs === undefined ? [] : [s.runnerMs]))
  printDistributions(`Sandbox lifecycle, ${samples.length} sandboxes`, 'ms', [
    { label: 'create (API call)', values: create },
    ...(runnerMs.length > 0
      ? [{ label: '  of which in the runner (its log)', values: runnerMs }]
      : []),
    { label: 'first exec (`true`)', values: firstExec },
    { label: 'create + first exec', values: total },
    { label: 'destroy (API call)', values: destroy },
  ])

  const phases = samples.flatMap((s) => phasesOf(s, events) ?? [])
  if (phases.length > 0) {
    const p50Create = dist(create).p50
    const table = (
      title: string,
      labels: readonly string[],
      pick: (p: Phases) => Record<string, number>,
    ): void => {
      const rows = labels.map((label) => {
        const values = phases.map((p) => pick(p)[label] as number)
        const m = dist(values).mean
        return {
          label,
          values,
          extra: title.startsWith('Create')
            ? `${((100 * m) / dist(create).mean).toFixed(0).padStart(3)}%`
            : undefined,
        }
      })
      printDistributions(
        title,
        'ms',
        rows,
        ['p50', 'p95', 'max', 'mean'],
        title.startsWith('Create') ? 'of mean' : '',
      )
    }
    table(
      `Create, phase by phase (${phases.length} timelines; p50 create ${formatNumber(p50Create)} ms)`,
      CREATE_PHASES,
      (p) => p.create,
    )
    table('First exec, phase by phase', EXEC_PHASES, (p) => p.exec)
    table('Destroy, phase by phase', DESTROY_PHASES, (p) => p.destroy)
  } else {
    say('(no complete timelines: the engine event stream or the proxy logs were missing)\n')
  }
  // Warm-ups do not count, but a slow first create is worth seeing: where did it go?
  for (const w of warmups) {
    const p = phasesOf(w, events)
    const top = p
      ? Object.entries(p.create)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([label, ms]) => `${label} ${Math.round(ms)}`)
          .join(', ')
      : 'no timeline'
    say(`warm-up ${w.id}: create ${Math.round(w.t1 - w.t0)} ms; largest phases (ms): ${top}`)
  }
  if (warmups.length > 0) say('')

  if (memory.length > 0) {
    const rows = [
      { label: 'idle: node VmRSS', values: memory.map((m) => mib(m.idle.rssKiB)) },
      { label: '  of which anonymous (RssAnon)', values: memory.map((m) => mib(m.idle.anonKiB)) },
      {
        label: '  of which file-backed (RssFile, shared)',
        values: memory.map((m) => mib(m.idle.fileKiB)),
      },
      {
        label: `idle: node PSS (${memory.length} sidecars up)`,
        values: memory.map((m) => mib(m.idle.pssKiB)),
      },
      {
        label: 'idle: node private (only its own pages)',
        values: memory.map((m) => mib(m.idle.privateKiB)),
      },
      {
        label: 'idle: container cgroup (docker stats)',
        values: memory.map((m) => mib(m.idle.cgroupKiB)),
      },
      {
        label: `after burst (${memory[0]!.burst.requests} req): VmRSS`,
        values: memory.map((m) => mib(m.after.rssKiB)),
      },
      { label: 'after burst: peak (VmHWM)', values: memory.map((m) => mib(m.after.hwmKiB)) },
      { label: 'after burst: container cgroup', values: memory.map((m) => mib(m.after.cgroupKiB)) },
    ]
    printDistributions(`Proxy sidecar memory, ${memory.length} sidecars`, 'MiB', rows, [
      'p50',
      'max',
    ])
    const decisions: Record<string, number> = {}
    for (const m of memory)
      for (const [k, v] of Object.entries(m.decisions)) decisions[k] = (decisions[k] ?? 0) + v
    say('Proxy decisions during the bursts (from its decision log):')
    for (const [k, v] of Object.entries(decisions).sort((a, b) => b[1] - a[1]))
      say(`  ${String(v).padStart(5)}  ${k}`)
    say('')
  }

  if (floor.length > 0) {
    const col = (k: keyof FloorRound): number[] => floor.map((f) => f[k])
    printDistributions(`Docker floor (no isorun), ${floor.length} rounds`, 'ms', [
      { label: 'internal network create', values: col('networkCreate') },
      { label: 'container create', values: col('containerCreate') },
      { label: 'container start, 1st on the network', values: col('startFirst') },
      { label: 'container start, 2nd', values: col('startSecond') },
      {
        label: '2 starts one after another',
        values: floor.map((f) => f.startFirst + f.startSecond),
      },
      { label: '2 starts concurrently', values: col('startBothParallel') },
      { label: 'first exec (`true`, engine API)', values: col('firstExec') },
      { label: 'remove 2 containers (force, parallel)', values: col('removeContainers') },
      { label: 'remove the network', values: col('removeNetwork') },
    ])
  }

  const p50Total = dist(total).p50
  const idle = memory.map((m) => mib(m.idle.rssKiB))
  const idleP50 = percentile(idle, 50)
  const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL')
  printResults('Goals', [
    {
      label: `p50 create + first exec   (goal <= ${GOAL_CREATE_TO_EXEC_P50_MS} ms) ${verdict(p50Total <= GOAL_CREATE_TO_EXEC_P50_MS)}`,
      value: p50Total,
      unit: 'ms',
    },
    ...(idle.length > 0
      ? [
          {
            label: `sidecar RSS idle, p50     (goal <= ${GOAL_SIDECAR_IDLE_MIB} MiB) ${verdict(idleP50 <= GOAL_SIDECAR_IDLE_MIB)}`,
            value: idleP50,
            unit: 'MiB',
          },
          {
            label: `sidecar RSS idle, max     (goal <= ${GOAL_SIDECAR_IDLE_MIB} MiB) ${verdict(Math.max(...idle) <= GOAL_SIDECAR_IDLE_MIB)}`,
            value: Math.max(...idle),
            unit: 'MiB',
          },
        ]
      : []),
  ])
  if (!runner.own)
    say('(runner at ISORUN_URL: no runner-side ms, and no allowed-by-name burst target)')
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:sandbox failed: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  },
)
