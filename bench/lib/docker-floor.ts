// The Docker floor for the sandbox benchmark: what the engine alone takes,
// through the same API calls the runner makes, with no isorun code in the way.
// One round: an internal network like a sandbox's (no host address), two
// containers on it from the sandbox image (fixed addresses, docker-init, the
// runner's keep-alive entrypoint) started one after the other, a first exec,
// removal; then the same two containers started at the same time. It says how
// much of a sandbox create is the engine's and what running the proxy's and
// the sandbox's start concurrently could save.
//
// Objects are named isorun-bench-<hex>[-a|-b] and labelled isorun.bench=<run>;
// everything a round makes is removed by the round (try/finally).

import { randomBytes } from 'node:crypto'
import type { Docker } from '../../src/runner/docker.js'
import { runShellScript } from '../../src/runner/container-shell.js'
import { dockerMessage, removeContainer, removeNetwork } from '../../src/runner/docker.js'

export interface FloorRound {
  readonly networkCreate: number
  readonly containerCreate: number
  readonly startFirst: number
  readonly startSecond: number
  readonly firstExec: number
  readonly removeContainers: number
  readonly removeNetwork: number
  /** Both containers started concurrently (Promise.all of the two start calls). */
  readonly startBothParallel: number
}

const KEEP_ALIVE = [
  '/bin/sh',
  '-c',
  'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done',
]

function now(): number {
  return performance.timeOrigin + performance.now()
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = now()
  const v = await fn()
  return [v, now() - t]
}

/** An internal, host-address-less network on a /28 nobody else uses (retries on overlap). */
async function makeNetwork(
  docker: Docker,
  name: string,
  labels: Record<string, string>,
): Promise<string> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const octet = 1 + Math.floor(Math.random() * 250)
    const base = `10.251.${octet}`
    try {
      await docker.createNetwork({
        Name: name,
        Driver: 'bridge',
        Internal: true,
        CheckDuplicate: true,
        IPAM: { Driver: 'default', Config: [{ Subnet: `${base}.0/28`, Gateway: `${base}.1` }] },
        Options: { 'com.docker.network.bridge.inhibit_ipv4': 'true' },
        Labels: labels,
      })
      return base
    } catch (err) {
      if (/overlap/i.test(dockerMessage(err))) continue
      throw err
    }
  }
  throw new Error('no free 10.251.x.0/28 subnet for the Docker floor measurement')
}

function createOn(
  docker: Docker,
  name: string,
  network: string,
  ip: string,
  image: string,
  labels: Record<string, string>,
): Promise<unknown> {
  return docker.createContainer({
    name,
    Image: image,
    Entrypoint: KEEP_ALIVE,
    Cmd: [],
    Labels: labels,
    HostConfig: {
      NetworkMode: network,
      Init: true,
      SecurityOpt: ['no-new-privileges:true'],
      Memory: 256 * 1024 * 1024,
      PidsLimit: 128,
    },
    NetworkingConfig: { EndpointsConfig: { [network]: { IPAMConfig: { IPv4Address: ip } } } },
  })
}

export async function floorRound(docker: Docker, image: string, run: string): Promise<FloorRound> {
  const labels = { 'isorun.bench': run }
  const name = `isorun-bench-${randomBytes(5).toString('hex')}`
  const [a, b] = [`${name}-a`, `${name}-b`]
  const cleanup = async (): Promise<void> => {
    await Promise.all([removeContainer(docker, a), removeContainer(docker, b)])
    await removeNetwork(docker, name)
  }
  try {
    const [base, networkCreate] = await timed(() => makeNetwork(docker, name, labels))
    const [, containerCreate] = await timed(async () => {
      await createOn(docker, a, name, `${base}.2`, image, labels)
      await createOn(docker, b, name, `${base}.3`, image, labels)
    })
    const [, startFirst] = await timed(() => docker.getContainer(a).start())
    const [, startSecond] = await timed(() => docker.getContainer(b).start())
    const [out, firstExec] = await timed(() => runShellScript(docker.getContainer(b), 'true', []))
    if (out.exitCode !== 0) throw new Error(`floor: exec true exited ${out.exitCode}`)
    const [, removeContainers] = await timed(() =>
      Promise.all([removeContainer(docker, a), removeContainer(docker, b)]),
    )
    const [, removeNet] = await timed(() => removeNetwork(docker, name))

    // The same two containers, started concurrently.
    const base2 = await makeNetwork(docker, name, labels)
    await createOn(docker, a, name, `${base2}.2`, image, labels)
    await createOn(docker, b, name, `${base2}.3`, image, labels)
    const [, startBothParallel] = await timed(() =>
      Promise.all([docker.getContainer(a).start(), docker.getContainer(b).start()]),
    )
    return {
      networkCreate,
      containerCreate: containerCreate / 2,
      startFirst,
      startSecond,
      firstExec,
      removeContainers,
      removeNetwork: removeNet,
      startBothParallel,
    }
  } finally {
    await cleanup()
  }
}
