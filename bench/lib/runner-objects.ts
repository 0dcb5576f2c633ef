// What a runner has left, found by its runner id: its containers, networks and
// volumes on the engine (every object it makes carries isorun.runner=<id>) and
// the CA state it keeps per sandbox in its state directory. For the runner's
// fault tests and the soak benchmark: once a runner recovered, none is left.

import { Docker, removeContainer, removeNetwork, removeVolume } from '../../src/runner/docker.js'
import { SandboxStateStore } from '../../src/runner/sandbox-state.js'

function byRunner(runnerId: string): { label: string[] } {
  return { label: [`isorun.runner=${runnerId}`] }
}

/** Everything of runner `runnerId`, one readable name each ("volume isorun-sbx-…-ca"). */
export async function runnerObjects(
  docker: Docker,
  runnerId: string,
  stateDir?: string,
): Promise<string[]> {
  const filters = byRunner(runnerId)
  const [containers, networks, volumes] = await Promise.all([
    docker.listContainers({ all: true, filters }),
    docker.listNetworks({ filters }),
    docker.listVolumes({ filters }),
  ])
  return [
    ...containers.map((c) => `container ${(c.Names[0] ?? c.Id).replace(/^\//, '')}`),
    ...networks.map((n) => `network ${n.Name}`),
    ...(volumes.Volumes ?? []).map((v) => `volume ${v.Name}`),
    ...(stateDir ? SandboxStateStore.of(stateDir).ids() : []).map((id) => `kept CA of ${id}`),
  ]
}

/** Removes what a failed test or scenario left on the engine with runner `runnerId`. */
export async function removeRunnerObjects(docker: Docker, runnerId: string): Promise<void> {
  const filters = byRunner(runnerId)
  for (const c of await docker.listContainers({ all: true, filters }))
    await removeContainer(docker, c.Id)
  for (const n of await docker.listNetworks({ filters })) await removeNetwork(docker, n.Id)
  for (const v of (await docker.listVolumes({ filters })).Volumes ?? [])
    await removeVolume(docker, v.Name)
}
