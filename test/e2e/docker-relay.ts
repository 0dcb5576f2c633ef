// A relay in front of the Docker socket that a test can cut and restore: to
// the runner behind it, the engine goes away (every connection, including its
// event stream, drops; new ones are refused) and comes back, without
// restarting the one dockerd the other tests share.

import { rmSync } from 'node:fs'
import net from 'node:net'

export class DockerRelay {
  private server: net.Server | undefined
  private readonly open = new Set<net.Socket>()

  constructor(
    readonly path: string,
    private readonly engine = '/var/run/docker.sock',
  ) {}

  /** DOCKER_HOST for a client that should go through the relay. */
  get dockerHost(): string {
    return `unix://${this.path}`
  }

  async up(): Promise<void> {
    rmSync(this.path, { force: true })
    const server = net.createServer((client) => {
      const upstream = net.connect(this.engine)
      for (const s of [client, upstream]) {
        this.open.add(s)
        s.on('close', () => this.open.delete(s))
        s.on('error', () => {
          client.destroy()
          upstream.destroy()
        })
      }
      client.pipe(upstream)
      upstream.pipe(client)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.path, () => resolve())
    })
    this.server = server
  }

  /** The engine is gone: new connections are refused and open ones drop. */
  async cut(): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const s of this.open) s.destroy()
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
    rmSync(this.path, { force: true })
  }
}
