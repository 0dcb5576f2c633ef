// A relay in front of the Docker socket, for the runner's fault tests and the
// soak benchmark, without touching the one dockerd everybody shares:
//
//   cut() / up()   the engine goes away (every connection, the event stream
//                  included, drops; new ones are refused) and comes back
//   hold(pattern)  the next request whose request line matches is never
//                  forwarded: the runner stops at exactly that step of its work
//                  (say, before the engine starts the proxy container), and the
//                  caller can kill it there
//
// Requests are recognised by their request line ("POST /v1.41/containers/
// create?name=… HTTP/1.1"): small request heads arrive whole on a unix socket.

import { rmSync } from 'node:fs'
import net from 'node:net'

interface Hold {
  readonly pattern: RegExp
  /** Matching requests still to let through before holding one. */
  skip: number
  readonly seen: () => void
}

export class DockerRelay {
  private server: net.Server | undefined
  private readonly open = new Set<net.Socket>()
  private holds: Hold[] = []

  constructor(
    readonly path: string,
    private readonly engine = '/var/run/docker.sock',
  ) {}

  /** DOCKER_HOST for a client that should go through the relay. */
  get dockerHost(): string {
    return `unix://${this.path}`
  }

  /**
   * Holds a request whose request line matches (after letting `skip` matching ones
   * through): it never reaches the engine, and its connection stays silent. Resolves when
   * it arrives.
   */
  hold(pattern: RegExp, skip = 0): Promise<void> {
    return new Promise((seen) => this.holds.push({ pattern, skip, seen }))
  }

  async up(): Promise<void> {
    rmSync(this.path, { force: true })
    const server = net.createServer((client) => this.relay(client))
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

  private relay(client: net.Socket): void {
    const upstream = net.connect(this.engine)
    for (const s of [client, upstream]) {
      this.open.add(s)
      s.on('close', () => this.open.delete(s))
      s.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    let held = false
    client.on('data', (chunk: Buffer) => {
      if (held) return
      const lines = chunk.toString('latin1').split('\r\n')
      const requestLine = lines.find((line) => /^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line))
      const hold = requestLine ? this.holds.find((h) => h.pattern.test(requestLine)) : undefined
      if (hold && hold.skip > 0) hold.skip--
      else if (hold) {
        held = true
        this.holds = this.holds.filter((h) => h !== hold)
        hold.seen()
        return
      }
      upstream.write(chunk)
    })
    client.on('end', () => upstream.end())
    upstream.pipe(client)
  }
}

/**
 * The engine requests of a sandbox create that make or start something, in order, as the
 * relay sees them: holding one stops the runner just before that step. The proxy's start
 * runs alongside the sandbox container's steps; dockerode starts containers by id, hence
 * the counting of starts (the proxy's is issued before the sandbox container exists).
 */
export const CREATE_STEPS: readonly {
  readonly before: string
  readonly pattern: RegExp
  readonly skip?: number
}[] = [
  { before: 'the network is created', pattern: /^POST \S*\/networks\/create[?\s]/ },
  { before: 'the trust volume is created', pattern: /^POST \S*\/volumes\/create[?\s]/ },
  {
    before: 'the proxy is created',
    pattern: /^POST \S*\/containers\/create\?name=isorun-sbx-[0-9a-f]+-proxy[&\s]/,
  },
  {
    before: 'the proxy joins the egress network',
    pattern: /^POST \S*\/networks\/[^/\s]+\/connect[?\s]/,
  },
  { before: 'the proxy starts', pattern: /^POST \S*\/containers\/[0-9a-f]+\/start[?\s]/ },
  {
    before: 'the sandbox container is created',
    pattern: /^POST \S*\/containers\/create\?name=isorun-sbx-[0-9a-f]+[&\s]/,
  },
  {
    before: 'the trust writer is created',
    pattern: /^POST \S*\/containers\/create\?name=isorun-sbx-[0-9a-f]+-trust[&\s]/,
  },
  {
    before: 'the trust files are uploaded',
    pattern: /^PUT \S*\/containers\/[0-9a-f]+\/archive[?\s]/,
  },
  {
    before: 'the sandbox container starts',
    pattern: /^POST \S*\/containers\/[0-9a-f]+\/start[?\s]/,
    skip: 1,
  },
]
