// Thin helpers over the Docker Engine API (dockerode): images, error
// messages, and removal that tolerates "already gone".

import Docker from 'dockerode'

export { Docker }

export class DockerError extends Error {
  constructor(
    message: string,
    readonly code: 'image-pull-failed' | 'docker-unavailable' | 'docker-error',
  ) {
    super(message)
  }
}

interface DockerApiError {
  statusCode?: number
  json?: { message?: string }
  message?: string
  code?: string
}

export function dockerMessage(err: unknown): string {
  const e = err as DockerApiError
  return e.json?.message ?? e.message ?? String(err)
}

export function isNotFound(err: unknown): boolean {
  return (err as DockerApiError).statusCode === 404
}

/** Makes sure an image is present, pulling it when allowed. Failures name the image and the reason. */
export async function ensureImage(docker: Docker, image: string, pull: boolean): Promise<void> {
  try {
    await docker.getImage(image).inspect()
    return
  } catch (err) {
    if (!isNotFound(err))
      throw new DockerError(`cannot inspect image ${image}: ${dockerMessage(err)}`, 'docker-error')
  }
  if (!pull)
    throw new DockerError(
      `image ${image} is not present and pulling is disabled (ISORUN_PULL_IMAGES=false)`,
      'image-pull-failed',
    )
  try {
    const stream = await docker.pull(image)
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, output: { error?: string }[]) => {
        const failed = err?.message ?? output?.find((o) => o.error)?.error
        if (failed) reject(new Error(failed))
        else resolve()
      })
    })
  } catch (err) {
    throw new DockerError(`cannot pull image ${image}: ${dockerMessage(err)}`, 'image-pull-failed')
  }
}

export async function removeContainer(docker: Docker, idOrName: string): Promise<void> {
  try {
    await docker.getContainer(idOrName).remove({ force: true, v: true })
  } catch (err) {
    if (
      !isNotFound(err) &&
      !/removal of container .* is already in progress/i.test(dockerMessage(err))
    )
      throw err
  }
}

/** Runs a removal, retrying briefly while Docker says the object is busy; gone already is fine. */
async function removeRetrying(remove: () => Promise<unknown>, busy: RegExp): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await remove()
      return
    } catch (err) {
      if (isNotFound(err)) return
      if (attempt >= 20 || !busy.test(dockerMessage(err))) throw err
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

/** Removes a network; Docker refuses while a removed container is still detaching. */
export function removeNetwork(docker: Docker, idOrName: string): Promise<void> {
  return removeRetrying(() => docker.getNetwork(idOrName).remove(), /active endpoints/i)
}

/** Removes a volume; Docker refuses while a removed container still holds it. */
export function removeVolume(docker: Docker, name: string): Promise<void> {
  return removeRetrying(() => docker.getVolume(name).remove(), /in use/i)
}
