// Reaching upstreams, for tunnels and for forwarded HTTP alike: the addresses
// of an allowed target, and a connection to exactly the addresses decide()
// checked (directly, or through the parent proxy). No second lookup happens
// between the check and the connect, so DNS rebinding cannot swap in an
// address that was never checked.

import net from 'node:net'
import { canonicalHost, hostText, joinAuthority, tryCanonicalHost } from '../policy/index.js'
import type { ProxyContext } from './context.js'
import { headText, readHttpHead, responseStatus } from './wire.js'

/** Why an allowed connection could not reach its upstream. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    /** For the log and for a 502/504 body or a SOCKS reply code. */
    readonly kind: 'resolve' | 'connect' | 'timeout' | 'parent',
  ) {
    super(message)
  }
}

/**
 * Addresses for a host known without asking a DNS server (an IP literal, an
 * override, a fresh cache entry); undefined when it needs a lookup, or is not a host.
 */
export function addressesWithoutLookup(ctx: ProxyContext, host: string): string[] | undefined {
  const canonical = tryCanonicalHost(host)
  return canonical ? ctx.resolver.resolveLocal(canonical) : undefined
}

/**
 * Addresses to check and dial for an allowed host. With a parent proxy, a name this
 * proxy cannot resolve goes to the parent as a name: undefined. Rejects with an
 * UpstreamError when the name does not resolve (anything else is a bug).
 */
export async function resolveUpstream(
  ctx: ProxyContext,
  host: string,
): Promise<string[] | undefined> {
  try {
    return await ctx.resolver.resolve(canonicalHost(host))
  } catch (err) {
    if (ctx.parentProxy && err instanceof UpstreamError && err.kind === 'resolve') return undefined
    throw err
  }
}

export interface Upstream {
  readonly socket: net.Socket
  /** What the log says was dialled: the address, or the parent proxy and the address it was sent. */
  readonly address: string
  /** Bytes read that were not the target's (a parent proxy's answer to CONNECT). */
  readonly overhead: number
}

/**
 * Connects to a checked target: the first of `addresses` that answers, or through
 * the parent proxy, which gets the checked address (so it cannot resolve the name
 * to another one), or the name when this proxy could not resolve it. `onread` is
 * used on a direct connection only.
 */
export function dialUpstream(
  ctx: ProxyContext,
  host: string,
  port: number,
  addresses: readonly string[] | undefined,
  onread?: OnRead,
): Promise<Upstream> {
  const parent = ctx.parentProxy
  if (!parent) return connectToAny(addresses ?? [], port, ctx.timeouts.connectMs, onread)
  return dialViaParent(ctx, parent, host, port, addresses?.[0])
}

async function dialViaParent(
  ctx: ProxyContext,
  parent: URL,
  host: string,
  port: number,
  checked: string | undefined,
): Promise<Upstream> {
  const socket = await connectViaParent(
    parent,
    checked ?? hostText(canonicalHost(host)),
    port,
    ctx.timeouts.connectMs,
  )
  // What the parent sent past its answer was put back: it is the target's.
  const overhead = socket.bytesRead - socket.readableLength
  return { socket, address: describeUpstream(ctx, checked), overhead }
}

/** What the log says was dialled for a checked address: it, or the parent proxy and what it was sent. */
export function describeUpstream(ctx: ProxyContext, checked: string | undefined): string {
  const parent = ctx.parentProxy
  if (!parent) return checked ?? ''
  return `via ${parent.host}${checked ? ` to ${checked}` : ''}`
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

/**
 * Tries each checked address in order, from `from`; the upstream that answered, or
 * the error of the last try.
 */
export function connectToAny(
  addresses: readonly string[],
  port: number,
  timeoutMs: number,
  onread?: OnRead,
  from = 0,
): Promise<Upstream> {
  const address = addresses[from]
  if (address === undefined)
    return Promise.reject(new UpstreamError('no address to connect to', 'connect'))
  const attempt = connectTo(address, port, timeoutMs, onread).then((socket): Upstream => ({
    socket,
    address,
    overhead: 0,
  }))
  if (from + 1 === addresses.length) return attempt
  return attempt.catch(() => connectToAny(addresses, port, timeoutMs, onread, from + 1))
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
