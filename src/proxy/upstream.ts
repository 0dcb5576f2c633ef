// Resolving and dialling upstreams. The proxy resolves a name itself, asks
// decide() about every address it got, then dials exactly those addresses: no
// second lookup happens between the check and the connect, so DNS rebinding
// cannot swap in an address that was never checked.

import { lookup } from 'node:dns/promises'
import net from 'node:net'
import { canonicalHost, joinAuthority, type CanonicalHost } from '../policy/index.js'
import { headText, readHttpHead, responseStatus } from './wire.js'

export class UpstreamError extends Error {
  constructor(
    message: string,
    /** For the log and for a 502/504 body. */
    readonly kind: 'resolve' | 'connect' | 'timeout' | 'parent',
  ) {
    super(message)
  }
}

/** Static name → addresses overrides (`--resolve name=ip`), consulted before the system resolver. */
export type ResolveOverrides = ReadonlyMap<string, readonly string[]>

export function parseResolveOverride(text: string): [string, string] {
  const eq = text.indexOf('=')
  if (eq <= 0 || eq === text.length - 1)
    throw new Error(`--resolve "${text}": write name=address, e.g. pypi.org=127.0.0.1`)
  const name = canonicalHost(text.slice(0, eq))
  const address = canonicalHost(text.slice(eq + 1))
  if (name.kind !== 'name')
    throw new Error(`--resolve "${text}": the left side must be a host name`)
  if (address.kind !== 'ip')
    throw new Error(`--resolve "${text}": the right side must be an IP address`)
  return [name.name, address.text]
}

export class Resolver {
  constructor(
    private readonly overrides: ResolveOverrides = new Map(),
    private readonly timeoutMs = 5000,
  ) {}

  /**
   * Addresses known without asking a DNS server: an IP literal's own, or a name's
   * overrides. Undefined when resolving would need a lookup.
   */
  resolveLocal(host: CanonicalHost): string[] | undefined {
    if (host.kind === 'ip') return [host.text]
    const override = this.overrides.get(host.name)
    return override ? [...override] : undefined
  }

  /**
   * Addresses for a canonical host: an IP literal is its own address; a name comes
   * from the overrides or the system resolver (so /etc/hosts and Docker's
   * extra_hosts and embedded DNS work).
   */
  async resolve(host: CanonicalHost): Promise<string[]> {
    if (host.kind === 'ip') return [host.text]
    const override = this.overrides.get(host.name)
    if (override) return [...override]
    let timer: NodeJS.Timeout | undefined
    try {
      const answers = await Promise.race([
        lookup(host.name, { all: true, verbatim: true }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new UpstreamError(`resolving ${host.name} timed out`, 'timeout')),
            this.timeoutMs,
          )
        }),
      ])
      if (answers.length === 0) throw new UpstreamError(`${host.name} has no addresses`, 'resolve')
      // IPv4 first: sandboxes and most egress networks have no IPv6 route.
      return answers.sort((a, b) => a.family - b.family).map((a) => a.address)
    } catch (err) {
      if (err instanceof UpstreamError) throw err
      throw new UpstreamError(
        `cannot resolve ${host.name}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        'resolve',
      )
    } finally {
      if (timer) clearTimeout(timer)
    }
  }
}

/** net's `onread`: the socket reads into memory the caller supplies, and emits no 'data'. */
export type OnRead = net.OnReadOpts

/** Connects to one address, or fails after `timeoutMs`. */
export function connectTo(
  address: string,
  port: number,
  timeoutMs: number,
  onread?: OnRead,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port, noDelay: true, onread })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(
        new UpstreamError(
          `connecting to ${address}:${port} timed out after ${timeoutMs} ms`,
          'timeout',
        ),
      )
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      socket.destroy()
      reject(
        new UpstreamError(
          `connecting to ${address}:${port} failed: ${err.code ?? err.message}`,
          'connect',
        ),
      )
    })
  })
}

/** Tries each checked address in order; returns the socket and the address that answered. */
export async function connectToAny(
  addresses: readonly string[],
  port: number,
  timeoutMs: number,
  onread?: OnRead,
): Promise<{ socket: net.Socket; address: string }> {
  let last: unknown
  for (const address of addresses) {
    try {
      return { socket: await connectTo(address, port, timeoutMs, onread), address }
    } catch (err) {
      last = err
    }
  }
  throw last instanceof Error ? last : new UpstreamError('no address to connect to', 'connect')
}

/**
 * Opens a tunnel through a parent HTTP proxy with CONNECT (`--upstream-proxy`).
 * The parent resolves the name, so the special-address check is the parent's
 * job for names this proxy cannot resolve itself.
 */
export async function connectViaParent(
  parent: URL,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<net.Socket> {
  const parentPort = Number(parent.port || (parent.protocol === 'https:' ? 443 : 80))
  const parentHost = parent.hostname.replace(/^\[|\]$/g, '')
  const socket = await connectTo(parentHost, parentPort, timeoutMs)
  const authority = joinAuthority(host, port)
  const headers: [string, string][] = [['Host', authority]]
  const credentials = parentCredentials(parent)
  if (credentials) headers.push(['Proxy-Authorization', credentials])
  socket.write(headText(`CONNECT ${authority} HTTP/1.1`, headers))
  socket.on('error', () => socket.destroy())
  const answer = await readHttpHead(socket, timeoutMs)
  if ('error' in answer) {
    socket.destroy()
    throw new UpstreamError(
      `parent proxy gave no answer to CONNECT ${authority}: ${answer.error}`,
      answer.timedOut ? 'timeout' : 'parent',
    )
  }
  const status = responseStatus(answer.head)
  if (status !== 200) {
    socket.destroy()
    throw new UpstreamError(
      `parent proxy refused CONNECT ${authority}: status ${status ?? 'unreadable'}`,
      'parent',
    )
  }
  socket.removeAllListeners('error')
  // What the parent sent past its answer is the target's.
  if (answer.rest.length > 0) socket.unshift(answer.rest)
  return socket
}

/** `Proxy-Authorization` for a parent proxy URL with credentials, or undefined. */
export function parentCredentials(parent: URL): string | undefined {
  if (parent.username === '') return undefined
  const pair = `${decodeURIComponent(parent.username)}:${decodeURIComponent(parent.password)}`
  return `Basic ${Buffer.from(pair).toString('base64')}`
}
