// The soak benchmark's Docker scenarios: concurrent creates, the runner killed
// in the middle of a create, dockerd restarted under running sandboxes.
//
// They run our own runner (`isorun runner` on this machine, bench/lib/
// host-runner.ts) with its own runner id, so every object it makes is found by
// that label, and with its own egress network (a fixed subnet) holding a
// stand-in upstream at a fixed address: `soak.test` in the proxies' hosts
// file. A sandbox is "usable" when `curl http://soak.test/` inside it gets the
// stand-in's answer through its proxy. The whole part holds the e2e lock.

import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Isorun, type Sandbox } from 'isorun'
import { Docker, dockerMessage, removeContainer, removeNetwork } from '../../src/runner/docker.js'
import { CREATE_STEPS, DockerRelay } from './docker-relay.js'
import { takeE2eLock } from './e2e-lock.js'
import { removeRunnerObjects, runnerObjects } from './runner-objects.js'
import { REPO_ROOT, startHostRunner, type HostRunner } from './host-runner.js'
import { percentile } from './measure.js'
import { check, progress, type Check, type ScenarioResult } from './soak-report.js'

export type DockerScenario = 'creates' | 'kill' | 'dockerd'

const SANDBOX_IMAGE = 'isorun-ci/sandbox:bookworm'
const STANDIN_IMAGE = 'isorun-ci/node:20'
const PROXY_IMAGE = process.env.ISORUN_PROXY_IMAGE || 'isorun:local'
const EGRESS = 'isorun-soak-egress'
const STANDIN = 'isorun-soak-standin'
const STANDIN_NAME = 'soak.test'
const STANDIN_ANSWER = 'soak-standin'
const USABLE = `curl -sS -m 5 http://${STANDIN_NAME}/`

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function sh(cmd: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() }
}

function script(path: string, args: string[]): void {
  const r = spawnSync(join(REPO_ROOT, path), args, { stdio: ['ignore', 2, 2] })
  if (r.status !== 0) throw new Error(`${path} ${args.join(' ')} failed (exit ${r.status})`)
}

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await sleep(250)
  }
}

// ---------------------------------------------------------------- the stage

interface Stage {
  readonly docker: Docker
  readonly stateDir: string
  readonly runnerId: string
  readonly standinIp: string
  runner?: HostRunner
}

/** The soak's egress network, on the first free /24 of a few candidates (a fixed subnet allows a fixed address). */
async function createEgress(docker: Docker): Promise<string> {
  for (let third = 200; third < 216; third++) {
    const subnet = `172.30.${third}.0/24`
    try {
      await docker.createNetwork({
        Name: EGRESS,
        Driver: 'bridge',
        CheckDuplicate: true,
        IPAM: { Driver: 'default', Config: [{ Subnet: subnet }] },
        Labels: { 'isorun-soak': '1' },
      })
      return `172.30.${third}.200`
    } catch (err) {
      if (/overlap/i.test(dockerMessage(err))) continue
      throw err
    }
  }
  throw new Error('no free 172.30.200-215.0/24 subnet for the soak egress network')
}

async function setStage(): Promise<Stage> {
  progress('docker: images (scripts/ci: base images and the product image)')
  script('scripts/ci/build-base-images.sh', ['node', 'sandbox'])
  script('scripts/ci/build-product-image.sh', [])
  const docker = new Docker()
  await clearStage(docker)
  const standinIp = await createEgress(docker)
  const server = `require('http').createServer((q,s)=>s.end('${STANDIN_ANSWER}\\n')).listen(80)`
  const run = sh('docker', [
    'run',
    '-d',
    '--name',
    STANDIN,
    '--label',
    'isorun-soak=1',
    '--network',
    EGRESS,
    '--ip',
    standinIp,
    '--restart',
    'unless-stopped',
    STANDIN_IMAGE,
    'node',
    '-e',
    server,
  ])
  if (run.code !== 0) throw new Error(`cannot start the stand-in: ${run.out}`)
  return {
    docker,
    stateDir: mkdtempSync(join(tmpdir(), 'isorun-bench-soak-runner-')),
    runnerId: `soak-${randomBytes(4).toString('hex')}`,
    standinIp,
  }
}

/** Removes the stand-in and the soak's egress network (after the sandboxes). */
async function clearStage(docker: Docker): Promise<void> {
  await removeContainer(docker, STANDIN)
  await removeNetwork(docker, EGRESS)
}

async function startRunner(stage: Stage, extra: Record<string, string> = {}): Promise<HostRunner> {
  stage.runner = await startHostRunner({
    stateDir: stage.stateDir,
    runnerId: stage.runnerId,
    env: {
      ISORUN_PROXY_IMAGE: PROXY_IMAGE,
      ISORUN_EGRESS_NETWORK: EGRESS,
      ISORUN_ALLOW_PRIVATE: `${stage.standinIp}/32`,
      ISORUN_PROXY_EXTRA_HOSTS: `${STANDIN_NAME}:${stage.standinIp}`,
      ISORUN_DEFAULT_TIMEOUT_MS: String(30 * 60_000),
      ...extra,
    },
  })
  return stage.runner
}

function sdk(runner: HostRunner): Isorun {
  return new Isorun({ url: runner.url, apiKey: runner.apiKey })
}

/** Containers, networks, volumes and kept CAs of our runner. */
function objectsOf(stage: Stage): Promise<string[]> {
  return runnerObjects(stage.docker, stage.runnerId, stage.stateDir)
}

function volumeCount(): number {
  return sh('docker', ['volume', 'ls', '-q']).out.split('\n').filter(Boolean).length
}

async function usable(sandbox: Sandbox): Promise<boolean> {
  const r = await sandbox.exec(USABLE)
  return r.stdout.includes(STANDIN_ANSWER)
}

function create(client: Isorun): Promise<Sandbox> {
  return client.create({ image: SANDBOX_IMAGE, network: { allow: [STANDIN_NAME] } })
}

// ---------------------------------------------------------------- creates

async function creates(stage: Stage, n: number): Promise<ScenarioResult> {
  const runner = await startRunner(stage)
  const client = sdk(runner)
  const volumesBefore = volumeCount()
  progress(`creates: ${n} concurrent creates`)
  const started = Date.now()
  const times: number[] = []
  const settled = await Promise.allSettled(
    Array.from({ length: n }, async () => {
      const t0 = Date.now()
      const s = await create(client)
      times.push(Date.now() - t0)
      return s
    }),
  )
  const wall = Date.now() - started
  const made = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const failures = settled.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []))
  const subnets = await Promise.all(
    made.map(async (s) => {
      const info = (await stage.docker.getNetwork(`isorun-sbx-${s.id}`).inspect()) as {
        IPAM?: { Config?: { Subnet?: string }[] }
      }
      return info.IPAM?.Config?.[0]?.Subnet ?? '?'
    }),
  )
  const working = (await Promise.all(made.map((s) => usable(s).catch(() => false)))).filter(
    Boolean,
  ).length
  progress('creates: destroying them all at once')
  const destroyed = await Promise.allSettled(made.map((s) => s.destroy()))
  const destroyFailures = destroyed.filter((r) => r.status === 'rejected').length
  const left = await objectsOf(stage)
  const volumesAfter = volumeCount()
  await runner.stop()
  return {
    name: 'creates',
    title: `${n} concurrent sandbox creates, then destroys`,
    figures: [
      ['created / asked', `${made.length} / ${n}`],
      ['create latency p50 / max', `${percentile(times, 50)} / ${Math.max(...times, 0)} ms`],
      ['all creates done after', `${wall} ms`],
      ['distinct subnets', new Set(subnets).size],
      ['usable (curl through the proxy)', working],
    ],
    checks: [
      check('every create succeeded', failures.length === 0, failures[0] ?? `${made.length}`),
      check('distinct subnets', new Set(subnets).size === made.length, subnets.join(' ')),
      check('every sandbox usable', working === made.length, `${working} of ${made.length}`),
      check('every destroy succeeded', destroyFailures === 0, `${destroyFailures} failed`),
      check('nothing left', left.length === 0, left.join(', ') || 'none'),
      check(
        'no volume left',
        volumesAfter === volumesBefore,
        `${volumesBefore} before, ${volumesAfter} after`,
      ),
    ],
  }
}

// ---------------------------------------------------------------- kill mid-create

/**
 * Stops the runner just before one step of a create (the relay holds that engine request),
 * kills it with SIGKILL there, and restarts it on the same state, straight on the engine.
 */
async function killBefore(stage: Stage, step: (typeof CREATE_STEPS)[number]): Promise<Check[]> {
  const relay = new DockerRelay(join(stage.stateDir, 'docker.sock'))
  await relay.up()
  const runner = await startRunner(stage, { DOCKER_HOST: relay.dockerHost })
  const held = relay.hold(step.pattern, step.skip)
  const outcome = create(sdk(runner)).then(
    () => 'created',
    () => 'failed',
  )
  // A create that ends first (it failed before the step) never reached what we test.
  const reached = await Promise.race([held.then(() => true), outcome.then(() => false)])
  runner.child.kill('SIGKILL')
  await runner.exited
  await relay.cut()
  const answered = await outcome
  const atKill = await objectsOf(stage)
  const again = await startRunner(stage)
  // Recovery runs before the API listens: whatever is left now, recovery left.
  const afterRestart = await objectsOf(stage)
  const listed = await sdk(again).list()
  for (const s of listed)
    await sdk(again)
      .get(s.id)
      .then((sbx) => sbx.destroy())
  await again.stop()
  return [
    check(
      `killed before ${step.before}: nothing left once restarted`,
      reached && atKill.length > 0 && afterRestart.length === 0 && listed.length === 0,
      `${atKill.length} object(s) at the kill (${atKill.join(', ') || 'none'}); after the restart: ${afterRestart.join(', ') || 'none'}${reached ? '' : `; the create ${answered} before the step`}`,
    ),
  ]
}

async function kill(stage: Stage): Promise<ScenarioResult> {
  const checks: Check[] = []
  for (const step of CREATE_STEPS) {
    progress(`kill: SIGKILL the runner just before ${step.before}; restart it`)
    checks.push(...(await killBefore(stage, step)))
  }
  return {
    name: 'kill',
    title:
      'the runner killed with SIGKILL at each step of a create (held there by a relay on its Docker socket), then restarted on the same state',
    figures: [['steps', CREATE_STEPS.map((s) => `before ${s.before}`).join('; ')]],
    checks,
  }
}

// ---------------------------------------------------------------- dockerd restart

function dockerdPid(): number | undefined {
  const r = sh('pgrep', ['-x', 'dockerd'])
  const pid = Number(r.out.split('\n')[0])
  return r.code === 0 && pid > 0 ? pid : undefined
}

async function restartDockerd(): Promise<number> {
  const pid = dockerdPid()
  if (!pid) throw new Error('no dockerd process to restart')
  const started = Date.now()
  process.kill(pid, 'SIGTERM')
  await waitFor(
    'dockerd to exit',
    async () => (existsSync(`/proc/${pid}`) ? undefined : true),
    120_000,
  )
  script('scripts/ci/ensure-docker.sh', [])
  return Date.now() - started
}

async function dockerd(stage: Stage): Promise<ScenarioResult> {
  const runner = await startRunner(stage)
  const client = sdk(runner)
  const sandboxes = await Promise.all([create(client), create(client), create(client)])
  const before = (await Promise.all(sandboxes.map(usable))).filter(Boolean).length
  progress('dockerd: restarting the engine (SIGTERM, then scripts/ci/ensure-docker.sh)')
  const downMs = await restartDockerd()
  const back = Date.now()
  const runnerAlive = runner.child.exitCode === null && runner.child.signalCode === null
  const reconnected = await waitFor(
    'the runner to reconnect',
    async () => (runner.output().includes('the Docker engine is back') ? true : undefined),
    60_000,
  ).catch(() => false)
  // Each sandbox: usable again, or reported stopped.
  const states = await Promise.all(
    sandboxes.map((s) =>
      waitFor(
        `sandbox ${s.id}`,
        async () => {
          const info = await client.get(s.id)
          if (info.info.status === 'stopped') return { state: 'stopped', ms: Date.now() - back }
          return (await usable(info)) ? { state: 'usable', ms: Date.now() - back } : undefined
        },
        120_000,
      ).catch((err: Error) => ({ state: `neither: ${err.message}`, ms: Date.now() - back })),
    ),
  )
  // Kept for reading when something went wrong: the runner's own account of the restart.
  const runnerLog = join(tmpdir(), `isorun-soak-runner-${stage.runnerId}.log`)
  writeFileSync(runnerLog, runner.output())
  progress('dockerd: destroying the sandboxes')
  const destroyed = await Promise.allSettled(sandboxes.map((s) => s.destroy()))
  const left = await objectsOf(stage)
  await runner.stop()
  return {
    name: 'dockerd',
    title: 'dockerd restarted while 3 sandboxes run (runner outside Docker, on this machine)',
    figures: [
      ['usable before the restart', `${before} of ${sandboxes.length}`],
      ['engine down, SIGTERM to answering again', `${(downMs / 1000).toFixed(1)} s`],
      ['runner log', runnerLog],
      [
        'each sandbox after',
        states.map((s) => `${s.state} after ${(s.ms / 1000).toFixed(1)} s`).join('; '),
      ],
    ],
    checks: [
      check(
        'the runner survived the restart',
        runnerAlive,
        runnerAlive ? 'still running' : 'exited',
      ),
      check(
        'the runner reconnected',
        reconnected === true,
        runner.output().includes('lost the Docker engine') ? 'lost, then back' : 'never noticed',
      ),
      check(
        'every sandbox usable again or reported stopped',
        states.every((s) => s.state === 'usable' || s.state === 'stopped'),
        states.map((s) => s.state).join(', '),
      ),
      check(
        'every destroy succeeded',
        destroyed.every((r) => r.status === 'fulfilled'),
        `${destroyed.filter((r) => r.status === 'rejected').length} failed`,
      ),
      check('nothing left', left.length === 0, left.join(', ') || 'none'),
    ],
  }
}

// ---------------------------------------------------------------- all

export async function dockerScenarios(
  which: readonly DockerScenario[],
  options: { creates: number },
): Promise<ScenarioResult[]> {
  const release = await takeE2eLock((holders) =>
    progress(
      `docker: waiting for the e2e lock (/tmp/isorun-e2e.lock, held by pid ${holders.join(', ')})`,
    ),
  )
  let stage: Stage | undefined
  try {
    stage = await setStage()
    const results: ScenarioResult[] = []
    if (which.includes('creates')) results.push(await creates(stage, options.creates))
    if (which.includes('kill')) results.push(await kill(stage))
    if (which.includes('dockerd')) results.push(await dockerd(stage))
    return results
  } finally {
    if (stage) {
      await stage.runner?.stop()
      // Whatever a failed scenario left: our label only.
      await removeRunnerObjects(stage.docker, stage.runnerId).catch(() => undefined)
      await clearStage(stage.docker).catch(() => undefined)
      rmSync(stage.stateDir, { recursive: true, force: true })
    }
    release()
  }
}
