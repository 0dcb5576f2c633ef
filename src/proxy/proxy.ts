// Starts the egress proxy: the listeners that are configured, the admin API,
// the decision log. Every listener shares one context and one policy holder.

import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import type net from 'node:net'
import type { OperatorSettings, Policy } from '../policy/index.js'
import {
  ConnectionTracker,
  DEFAULT_TIMEOUTS,
  PolicyHolder,
  type ProxyContext,
  type ProxyTimeouts,
} from './context.js'
import { Approvals } from './approvals.js'
import { BudgetLedger } from './budgets.js'
import { DecisionLog, type LogDestination } from './decision-log.js'
import type { DnsServerHandle } from './dns-server.js'
import { HttpForwarder } from './http-forward.js'
import { createH2Server } from './intercept/h2-server.js'
import { interceptTunnel } from './intercept/terminate.js'
import {
  createHttpProxyServer,
  createTransparentHttpServer,
  createTunnelHttpServer,
} from './http-listener.js'
import { InterceptionState, type InterceptionSettings } from './interception.js'
import type { CatalogueSource } from './policy-source.js'
import { Sweeper, sweepInterval } from './sweeper.js'
import { Resolver, type DnsSettings, type ResolveOverrides } from './resolver.js'

export interface ListenAddress {
  readonly host: string
  readonly port: number
}

export interface ProxyListeners {
  /** HTTP proxy: absolute-form requests and CONNECT. */
  readonly http?: ListenAddress
  readonly socks?: ListenAddress
  /** Transparent TLS (DNS-steered port 443). */
  readonly tls?: ListenAddress
  /** Transparent plain HTTP (DNS-steered port 80). */
  readonly plain?: ListenAddress
  /** DNS over UDP and TCP. */
  readonly dns?: ListenAddress
  readonly admin?: ListenAddress
}

export interface ProxyOptions {
  readonly policy: Policy
  readonly listen: ProxyListeners
  readonly sandboxId?: string
  /** Operator settings, applied to every policy (also those sent to PUT /policy). */
  readonly operator?: OperatorSettings
  /**
   * The catalogue `PUT /policy {"profile": …}` resolves names with, or what opens it
   * on first use (then a proxy that is only ever sent specs never loads profiles).
   */
  readonly catalogue?: CatalogueSource
  readonly resolveOverrides?: ResolveOverrides
  /** How upstream names are looked up: DNS servers, the cache's TTL floor and ceiling, the hosts file. */
  readonly dns?: DnsSettings
  readonly parentProxy?: URL
  readonly logAllowed?: boolean
  readonly ringSize?: number
  readonly timeouts?: Partial<ProxyTimeouts>
  /** Required when an admin listener is configured. */
  readonly adminToken?: string
  /** The IPv4 address DNS answers carry; defaults to the DNS listener's own address. */
  readonly dnsAnswerAddress?: string
  /** How long a DNS query waits for an approval (`onUnknown: ask`); default 3 s. */
  readonly dnsApprovalWaitMs?: number
  /**
   * The destination port the transparent listeners decide for. DNS steering sends
   * clients to the proxy's 443 and 80, so these default to the listening ports.
   */
  readonly transparentPorts?: { readonly tls?: number; readonly plain?: number }
  /** Where decision lines go; stdout by default. */
  readonly logDestination?: LogDestination
  /** CA, secrets and upstream CAs for TLS interception (also set later through PUT /interception). */
  readonly interception?: InterceptionSettings
}

export interface RunningProxy {
  readonly context: ProxyContext
  readonly addresses: { readonly [K in keyof ProxyListeners]?: AddressInfo }
  /**
   * Stops accepting, lets open connections finish for up to `graceMs`, then closes the
   * rest; resolves with how many it had to close.
   */
  close(graceMs?: number): Promise<number>
}

function listen(server: net.Server | http.Server, address: ListenAddress): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const log = new DecisionLog({
    sandbox: options.sandboxId ?? '',
    logAllowed: options.logAllowed ?? true,
    ringSize: options.ringSize ?? 1000,
    ...(options.logDestination ? { destination: options.logDestination } : {}),
  })
  const timeouts: ProxyTimeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts }
  const policy = new PolicyHolder(options.policy)
  const context: ProxyContext = {
    policy,
    log,
    resolver: new Resolver({ ...options.dns, overrides: options.resolveOverrides }),
    timeouts,
    parentProxy: options.parentProxy,
    tracker: new ConnectionTracker((n) => (log.metrics.activeConnections = n)),
    interception: new InterceptionState(options.interception),
    sweeper: new Sweeper(sweepInterval(timeouts.idleMs)),
    approvals: new Approvals({ policy, operator: options.operator ?? {}, log: log.operational }),
    budgets: new BudgetLedger(() => policy.current),
    serveHttpInTunnel: (socket, buffered, target) => tunnelHttp.handOff(socket, buffered, target),
    interceptTls: (socket, clientHello, target, exchange) =>
      interceptTunnel(context, intercepted, socket, clientHello, target, exchange),
  }
  const forwarder = new HttpForwarder(context)
  const tunnelHttp = createTunnelHttpServer(context, forwarder)
  const intercepted = { h1: tunnelHttp.handOff, h2: createH2Server(context, forwarder) }
  const servers: net.Server[] = []
  /** Also run when the servers close (HTTP servers behind a listener, which never listen). */
  const closers: (() => void)[] = []
  const addresses: { -readonly [K in keyof ProxyListeners]?: AddressInfo } = {}
  closers.push(() => intercepted.h2.close())
  let dns: DnsServerHandle | undefined

  const close = async (graceMs = 0): Promise<number> => {
    // Stop accepting at once; a server's close callback only fires once its connections are gone.
    const closed = Promise.all(servers.map((s) => closeServer(s)))
    for (const c of closers) c()
    context.approvals.close()
    await dns?.close()
    const deadline = Date.now() + graceMs
    while (context.tracker.size > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50))
    const cut = context.tracker.size
    context.tracker.destroyAll()
    forwarder.close()
    await closed
    log.flush()
    return cut
  }

  try {
    dns = await openListeners(context, forwarder, options, { servers, closers, addresses })
  } catch (err) {
    await close()
    throw err
  }
  log.operational.info(
    {
      policy: options.policy.name,
      sandbox: options.sandboxId ?? '',
      listeners: Object.fromEntries(
        Object.entries(addresses).map(([k, a]) => [k, `${a.address}:${a.port}`]),
      ),
    },
    'proxy started',
  )
  return { context, addresses, close }
}

/** What the listeners opened so far: closed again by the proxy's close(). */
interface Opened {
  readonly servers: net.Server[]
  /** Also run when the servers close (HTTP servers behind a listener, which never listen). */
  readonly closers: (() => void)[]
  readonly addresses: { -readonly [K in keyof ProxyListeners]?: AddressInfo }
}

/**
 * Opens the configured listeners, each recorded in `opened` as soon as it
 * listens (so a failure closes what came before); returns the DNS server.
 */
async function openListeners(
  context: ProxyContext,
  forwarder: HttpForwarder,
  options: ProxyOptions,
  opened: Opened,
): Promise<DnsServerHandle | undefined> {
  const { servers, closers, addresses } = opened
  let dns: DnsServerHandle | undefined
  const { listen: l } = options
  if (l.admin) {
    if (!options.adminToken) throw new Error('an admin listener needs an admin token')
    // Modules of listeners that are not configured are never loaded (memory of an idle sidecar).
    const { createAdminServer } = await import('./admin.js')
    const admin = createAdminServer(context, {
      token: options.adminToken,
      operator: options.operator ?? {},
      catalogue: options.catalogue,
    })
    servers.push(admin)
    addresses.admin = await listen(admin, l.admin)
  }
  if (l.http) {
    const { server, closeHttp } = createHttpProxyServer(context, forwarder)
    servers.push(server)
    closers.push(closeHttp)
    addresses.http = await listen(server, l.http)
  }
  if (l.socks) {
    const { createSocksServer } = await import('./socks-listener.js')
    const server = createSocksServer(context)
    servers.push(server)
    addresses.socks = await listen(server, l.socks)
  }
  if (l.tls) {
    // The port is only known after listening when 0 was asked for, so create, listen, then set it.
    const holder: { port: number } = { port: options.transparentPorts?.tls ?? l.tls.port }
    const { createTransparentTlsServer } = await import('./tls-listener.js')
    const server = createTransparentTlsServer(context, () => holder.port)
    servers.push(server)
    addresses.tls = await listen(server, l.tls)
    if (holder.port === 0) holder.port = addresses.tls.port
  }
  if (l.plain) {
    const holder: { port: number } = { port: options.transparentPorts?.plain ?? l.plain.port }
    const server = createTransparentHttpServer(context, forwarder, () => holder.port)
    servers.push(server)
    addresses.plain = await listen(server, l.plain)
    if (holder.port === 0) holder.port = addresses.plain.port
  }
  if (l.dns) {
    const answerAddress = options.dnsAnswerAddress ?? l.dns.host
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(answerAddress) || answerAddress === '0.0.0.0') {
      throw new Error(
        "DNS answers need the proxy's IPv4 address: listen on a specific IPv4 address or set the answer address (--dns-answer)",
      )
    }
    const { startDnsListener } = await import('./dns-listener.js')
    dns = await startDnsListener(context, {
      host: l.dns.host,
      port: l.dns.port,
      answerAddress,
      ...(options.dnsApprovalWaitMs !== undefined
        ? { approvalWaitMs: options.dnsApprovalWaitMs }
        : {}),
    })
    if (dns.udpAddress) addresses.dns = dns.udpAddress
  }
  return dns
}
