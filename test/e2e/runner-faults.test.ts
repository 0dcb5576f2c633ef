// Runner faults on a real engine: the runner killed in the middle of a create,
// the runner losing the engine while a proxy restarts, and a proxy that
// crashes. Runner processes here are our own (`isorun runner` on this
// machine, with their own runner id), so every object they make is found by
// that id and nothing of the compose stack's is touched.
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Dockerode from 'dockerode'
import { CREATE_STEPS, DockerRelay } from '../../bench/lib/docker-relay.js'
import { startHostRunner, type HostRunner } from '../../bench/lib/host-runner.js'
import { removeRunnerObjects, runnerObjects } from '../../bench/lib/runner-objects.js'
import { Isorun } from 'isorun'
import { docker, run } from './setup/sh.js'
import {
  e2e,
  proxyContainer,
  sandboxContainer,
  skipReason,
  waitFor,
  withSandbox,
} from './helpers.js'

/** Settings of the compose stack's runner that our runners need too (the stand-in). */
function runnerEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ISORUN_PROXY_IMAGE: 'isorun:local',
    ISORUN_EGRESS_NETWORK: 'isorun-egress',
    ISORUN_ALLOW_PRIVATE: e2e.composeEnv.ISORUN_ALLOW_PRIVATE ?? '',
    ISORUN_PROXY_EXTRA_HOSTS: e2e.composeEnv.ISORUN_PROXY_EXTRA_HOSTS ?? '',
    ISORUN_DEFAULT_TIMEOUT_MS: String(10 * 60_000),
    ...extra,
  }
}

const curlStandin = 'curl -sS -m 5 http://pypi.org/hello'

describe.skipIf(skipReason !== undefined)('runner faults', () => {
  let stateDir: string
  const runnerId = `e2e-faults-${randomBytes(4).toString('hex')}`
  const engine = new Dockerode()
  /** Containers, networks, volumes and kept CAs of our runners. */
  const left = (): Promise<string[]> => runnerObjects(engine, runnerId, stateDir)
  const runners: HostRunner[] = []
  const start = async (extra: Record<string, string> = {}): Promise<HostRunner> => {
    const r = await startHostRunner({ stateDir, runnerId, env: runnerEnv(extra) })
    runners.push(r)
    return r
  }

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'isorun-e2e-runner-'))
  })
  afterAll(async () => {
    for (const r of runners) await r.stop()
    await removeRunnerObjects(engine, runnerId)
    await rm(stateDir, { recursive: true, force: true })
  })

  // Stopped by the relay just before each engine step of a create: every stop leaves a
  // half-made sandbox (at least the CA kept in the state directory, which comes first).
  it.each(CREATE_STEPS)(
    'a runner killed with SIGKILL just before $before leaves nothing once restarted',
    async (step) => {
      const relay = new DockerRelay(join(stateDir, 'docker-kill.sock'))
      await relay.up()
      const first = await start({ DOCKER_HOST: relay.dockerHost })
      const held = relay.hold(step.pattern, step.skip)
      const creating = new Isorun({ url: first.url, apiKey: first.apiKey })
        .create({ image: e2e.sandboxImage, networkProfile: 'locked-down' })
        .then(
          () => 'created',
          (err: Error) => err.message,
        )
      // A create that ends before it reaches the step never holds: say so instead of waiting.
      const reached = await Promise.race([held.then(() => 'held'), creating])
      expect(reached, `the create ended before ${step.before}: ${first.output()}`).toBe('held')
      first.child.kill('SIGKILL')
      expect(await first.exited).toBe('SIGKILL')
      await relay.cut()
      expect(await creating).not.toBe('created')
      expect(await left()).not.toEqual([])

      const second = await start()
      // Recovery runs before the API listens: the half-made sandbox is already gone.
      expect(await left()).toEqual([])
      // Its log line is on stdout, the listening line on stderr: two pipes, read in any order.
      await waitFor('the recovery to be logged', async () =>
        second.output().includes('removed an incomplete or abandoned sandbox') ? true : undefined,
      )
      // And the restarted runner works.
      const sbx = await new Isorun({ url: second.url, apiKey: second.apiKey }).create({
        image: e2e.sandboxImage,
        networkProfile: 'locked-down',
      })
      await sbx.destroy()
      expect(await left()).toEqual([])
      await second.stop()
    },
  )

  it('a runner that loses the engine while a proxy restarts sends the policy again when the engine is back', async () => {
    const relay = new DockerRelay(join(stateDir, 'docker.sock'))
    await relay.up()
    const runner = await start({ DOCKER_HOST: relay.dockerHost })
    const sdk = new Isorun({ url: runner.url, apiKey: runner.apiKey })
    const sbx = await sdk.create({ image: e2e.sandboxImage, network: { allow: ['pypi.org'] } })
    try {
      // Exec straight through the engine: the runner cannot reach it for a while.
      const curl = () =>
        run('docker', ['exec', sandboxContainer(sbx), 'sh', '-c', curlStandin], { check: false })
      expect((await curl()).stdout).toContain('stand-in')

      await relay.cut()
      await waitFor('the runner to notice', async () =>
        runner.output().includes('lost the Docker engine') ? true : undefined,
      )
      // Restarted while the runner is blind: the proxy comes back refusing everything.
      await docker('restart', proxyContainer(sbx))
      expect((await curl()).stdout).not.toContain('stand-in')

      await relay.up()
      await waitFor(
        'the proxy to get its policy back',
        async () => ((await curl()).stdout.includes('stand-in') ? true : undefined),
        60_000,
      )
      expect(runner.output()).toContain('the Docker engine is back')
      expect((await sdk.get(sbx.id)).info.status).toBe('running')
    } finally {
      await sbx.destroy()
      await runner.stop()
      await relay.cut()
    }
  })
})

describe.skipIf(skipReason !== undefined)('containers that restart', () => {
  it("come back in either order: the sandbox first does not take the proxy's address", async () => {
    await withSandbox({ network: { allow: ['pypi.org'] } }, async (sbx) => {
      expect((await sbx.exec(curlStandin)).stdout).toContain('stand-in')
      // As after an engine restart, when the engine happens to start the sandbox first.
      await docker('stop', '-t', '1', proxyContainer(sbx), sandboxContainer(sbx))
      await docker('start', sandboxContainer(sbx))
      await docker('start', proxyContainer(sbx))
      await waitFor(
        'the restarted proxy to get its policy back',
        async () => ((await sbx.exec(curlStandin)).stdout.includes('stand-in') ? true : undefined),
        60_000,
      )
      expect((await sbx.refresh()).status).toBe('running')
    })
  })
})

describe.skipIf(skipReason !== undefined)('proxy crash', () => {
  it('a proxy that crashes is restarted by the engine and gets its policy back from the runner', async () => {
    await withSandbox({ network: { allow: ['pypi.org'] } }, async (sbx) => {
      expect((await sbx.exec(curlStandin)).stdout).toContain('stand-in')
      // The proxy's node process, killed from the host as a crash would end it.
      const top = await docker('top', proxyContainer(sbx), '-eo', 'pid,args')
      const line = top
        .split('\n')
        .find((l) => /\bnode\b.*\bproxy\b/.test(l) && !l.includes('docker-init'))
      expect(line).toBeDefined()
      process.kill(Number(line!.trim().split(/\s+/)[0]), 'SIGKILL')
      await waitFor(
        'the engine to restart the proxy',
        async () =>
          Number(await docker('inspect', '-f', '{{.RestartCount}}', proxyContainer(sbx))) > 0
            ? true
            : undefined,
        60_000,
      )
      await waitFor(
        'the restarted proxy to get its policy back',
        async () => ((await sbx.exec(curlStandin)).stdout.includes('stand-in') ? true : undefined),
        60_000,
      )
      expect((await sbx.refresh()).status).toBe('running')
      // Still the same policy, not an open one.
      const other = await sbx.exec(
        'curl -sS -m 3 -o /dev/null -w "%{http_code}" http://files.pythonhosted.org/hello',
      )
      expect(other.stdout).toBe('403')
    })
  })
})
