// What every listener shares: the policy in force, the decision log, the
// resolver and the settings. Listeners never decide on their own; they describe
// what they saw as an EgressRequest and call the one decide().

import type net from 'node:net'
import type { Policy } from '../policy/index.js'
import type { Approvals } from './approvals.js'
import type { BudgetLedger } from './budgets.js'
import type { DecisionLog, DecisionRecord } from './decision-log.js'
import type { HeldAnswer } from './exchange.js'
import type { InterceptionState } from './interception.js'
import type { Sweeper } from './sweeper.js'
import type { Resolver } from './resolver.js'

export interface ProxyTimeouts {
  /** Connecting to an upstream address. */
  readonly connectMs: number
  /** Waiting for a tunnel's first client bytes (ClientHello or HTTP head). */
  readonly firstBytesMs: number
  /** An HTTP request head (CONNECT or any other) from its first byte to its end. */
  readonly headMs: number
  /** A SOCKS handshake. */
  readonly handshakeMs: number
  /** An established tunnel with no traffic either way. */
  readonly idleMs: number
}

export const DEFAULT_TIMEOUTS: ProxyTimeouts = {
  connectMs: 10_000,
  firstBytesMs: 15_000,
  headMs: 30_000,
  handshakeMs: 10_000,
  idleMs: 15 * 60_000,
}

/** Holds the policy in force. Each connection reads it once, when it starts. */
export class PolicyHolder {
  /** What the policy was made from, as its sender described it (the runner keeps its request here). */
  source: unknown = undefined

  constructor(private policy: Policy) {}

  get current(): Policy {
    return this.policy
  }

  replace(policy: Policy, source?: unknown): void {
    this.policy = policy
    this.source = source
  }
}

/** Open client sockets, for the active-connections gauge and for draining on shutdown. */
export class ConnectionTracker {
  private readonly sockets = new Set<net.Socket>()

  constructor(private readonly onChange: (count: number) => void) {}

  add(socket: net.Socket): void {
    this.sockets.add(socket)
    this.onChange(this.sockets.size)
    socket.once('close', () => {
      this.sockets.delete(socket)
      this.onChange(this.sockets.size)
    })
  }

  get size(): number {
    return this.sockets.size
  }

  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy()
  }
}

/** The target of a CONNECT or SOCKS tunnel. */
export interface TunnelTarget {
  readonly protocol: 'connect' | 'socks'
  readonly host: string
  readonly port: number
  /** The approval that let the tunnel through: it covers the requests it carries. */
  readonly approved?: HeldAnswer
}

export interface ProxyContext {
  readonly policy: PolicyHolder
  readonly log: DecisionLog
  readonly resolver: Resolver
  readonly timeouts: ProxyTimeouts
  /** `--upstream-proxy`: every upstream connection goes through this HTTP proxy. */
  readonly parentProxy: URL | undefined
  readonly tracker: ConnectionTracker
  /** The sandbox CA, secrets and upstream trust, for the TLS interception stage. */
  readonly interception: InterceptionState
  /** Deadlines that need no exact timer: idle tunnels, CONNECT heads that never end. */
  readonly sweeper: Sweeper
  /** Held requests (`onUnknown: ask`): `await approvals.ask(request)`. */
  readonly approvals: Approvals
  /** Budgets (`limits`): `budgets.check(destination)`, `budgets.charge(destination, usage)`. */
  readonly budgets: BudgetLedger
  /**
   * Takes over a tunnel whose client speaks plain HTTP, so that every request on
   * it is decided on its own (with its Host checked against the tunnel's target).
   */
  readonly serveHttpInTunnel: (socket: net.Socket, buffered: Buffer, target: TunnelTarget) => void
}

/** Records a decision in the log, the ring and the metrics, under the policy's name. */
export function record(ctx: ProxyContext, entry: DecisionRecord & { policy: Policy }): void {
  ctx.log.record(entry, entry.policy.name)
}

export function clientAddress(socket: net.Socket): string | undefined {
  return socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort ?? 0}` : undefined
}
