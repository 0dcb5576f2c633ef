// Starts the egress proxy in-process, the way `isorun proxy` does, with a policy
// built from rules, static name overrides to loopback upstreams, and an
// in-memory pino destination (stdout stays clean). Decision events are
// collected through the log's subscribe hook, and the JSON log lines are kept
// too, so a test can check both.
//
// The dial guard: every upstream connection the proxy (or anything else in the
// test process) opens goes through net.connect / net.createConnection; the
// guard records each attempt and fails any that is not to loopback without
// touching the network, so a test of a refused private address cannot reach a
// real one even if the proxy's defence were broken.

import dgram from 'node:dgram'
import net from 'node:net'
import {
  compilePolicy,
  type EndpointSet,
  type Mode,
  type OperatorSettings,
  type PolicySpec,
} from '../../src/policy/index.js'
import type { DecisionEvent } from '../../src/proxy/decision-log.js'
import type { ProxyTimeouts } from '../../src/proxy/context.js'
import {
  startProxy,
  type ProxyListeners,
  type ProxyOptions,
  type RunningProxy,
} from '../../src/proxy/proxy.js'

export interface DialAttempt {
  readonly host: string
  readonly port: number
  readonly blocked: boolean
}

const dialAttempts: DialAttempt[] = []
let guardInstalled = false

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return (
    h === 'localhost' ||
    h === '::1' ||
    /^127\.\d+\.\d+\.\d+$/.test(h) ||
    /^::ffff:127\.\d+\.\d+\.\d+$/.test(h)
  )
}

function target(args: unknown[]): { host: string; port: number } | undefined {
  const [first, second] = args
  if (typeof first === 'object' && first !== null) {
    const o = first as { host?: string; port?: number | string; path?: string }
    if (o.path !== undefined) return undefined
    return { host: o.host ?? 'localhost', port: Number(o.port) }
  }
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first)))
    return { host: typeof second === 'string' ? second : 'localhost', port: Number(first) }
  return undefined // a unix socket path
}

/** Records every outgoing TCP connection of this process and fails non-loopback ones offline. */
export function installDialGuard(): void {
  if (guardInstalled) return
  guardInstalled = true
  const mutable = net as unknown as Record<string, (...args: unknown[]) => net.Socket>
  for (const name of ['connect', 'createConnection']) {
    const original = mutable[name] as (...args: unknown[]) => net.Socket
    mutable[name] = function guarded(...args: unknown[]): net.Socket {
      const t = target(args)
      if (t && !isLoopback(t.host)) {
        dialAttempts.push({ ...t, blocked: true })
        const socket = new net.Socket()
        process.nextTick(() =>
          socket.destroy(
            Object.assign(new Error(`test dial guard: refusing ${t.host}:${t.port}`), {
              code: 'EISORUNTESTGUARD',
            }),
          ),
        )
        return socket
      }
      if (t) dialAttempts.push({ ...t, blocked: false })
      return original.apply(net, args)
    }
  }
}

/** Dial attempts so far (loopback ones included), for "no connection was attempted" checks. */
export function dials(): readonly DialAttempt[] {
  return dialAttempts
}

export type ListenerKind = keyof ProxyListeners

/** A port that is free on 127.0.0.1 for both TCP and UDP right now. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const server = net.createServer()
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port))
    })
    await new Promise((resolve) => server.close(resolve))
    const udp = dgram.createSocket('udp4')
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false))
      udp.bind(port, '127.0.0.1', () => resolve(true))
    })
    await new Promise<void>((resolve) => udp.close(() => resolve()))
    if (ok || attempt > 20) return port
  }
}

export interface TestProxyOptions {
  /** The policy's (profile's) name; `test` by default. */
  readonly name?: string
  readonly mode?: Mode
  readonly allow?: readonly string[]
  readonly deny?: readonly string[]
  /** Endpoint rules (method and path per host). */
  readonly endpoints?: readonly EndpointSet[]
  /** Other policy fields: `onUnknown`, `approvalTimeoutMs`, `limits`. */
  readonly policy?: Pick<PolicySpec, 'onUnknown' | 'approvalTimeoutMs' | 'limits'>
  /** `operator.allowSpecial = ['loopback']`; true unless set to false. */
  readonly loopback?: boolean
  readonly operator?: OperatorSettings
  /** Static overrides, name → address(es). */
  readonly resolve?: Readonly<Record<string, string | readonly string[]>>
  /** Which listeners to open on 127.0.0.1:0; HTTP and SOCKS by default. */
  readonly listeners?: readonly ListenerKind[]
  /** Fixed ports for some listeners (DNS needs one so UDP and TCP share it). */
  readonly ports?: Partial<Record<ListenerKind, number>>
  readonly timeouts?: Partial<ProxyTimeouts>
  readonly extra?: Partial<ProxyOptions>
}

export interface TestProxy {
  readonly running: RunningProxy
  port(kind: ListenerKind): number
  readonly events: DecisionEvent[]
  /** The JSON lines the decision log wrote, parsed. */
  logLines(): Record<string, unknown>[]
  /** The current event count: pass it as `since` to wait for events after this point. */
  mark(): number
  /** The first event at index >= since that matches, waiting for it if needed. */
  waitForEvent(
    pred?: (e: DecisionEvent) => boolean,
    opts?: { since?: number; timeoutMs?: number },
  ): Promise<DecisionEvent>
  /** Resolves once `n` events at index >= since match; returns them. */
  waitForEvents(
    n: number,
    pred?: (e: DecisionEvent) => boolean,
    opts?: { since?: number; timeoutMs?: number },
  ): Promise<DecisionEvent[]>
  close(): Promise<void>
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789'

export async function startTestProxy(options: TestProxyOptions = {}): Promise<TestProxy> {
  installDialGuard()
  const operator: OperatorSettings = options.operator ?? {
    allowSpecial: options.loopback === false ? [] : ['loopback'],
  }
  const allow = options.allow ?? []
  const policy = compilePolicy(
    {
      name: options.name ?? 'test',
      mode: options.mode ?? 'allow-list',
      allow: allow.map((rule) => ({ rule, from: options.name ?? 'test' })),
      deny: (options.deny ?? []).map((rule) => ({ rule, from: options.name ?? 'test' })),
      ...(options.endpoints ? { endpoints: options.endpoints } : {}),
      ...options.policy,
    },
    operator,
  )
  const overrides = new Map<string, string[]>()
  for (const [name, addr] of Object.entries(options.resolve ?? {}))
    overrides.set(name, typeof addr === 'string' ? [addr] : [...addr])
  const listen: { -readonly [K in ListenerKind]?: { host: string; port: number } } = {}
  for (const kind of options.listeners ?? ['http', 'socks'])
    listen[kind] = { host: '127.0.0.1', port: options.ports?.[kind] ?? 0 }

  const lines: string[] = []
  const events: DecisionEvent[] = []
  const waiters = new Set<() => void>()
  const running = await startProxy({
    policy,
    listen,
    operator,
    resolveOverrides: overrides,
    logDestination: { write: (line: string) => void lines.push(line) },
    ...(listen.admin ? { adminToken: ADMIN_TOKEN } : {}),
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...options.extra,
  })
  running.context.log.subscribe((event) => {
    events.push(event)
    for (const w of [...waiters]) w()
  })

  const waitForEvents = (
    n: number,
    pred: (e: DecisionEvent) => boolean = () => true,
    opts: { since?: number; timeoutMs?: number } = {},
  ): Promise<DecisionEvent[]> =>
    new Promise((resolve, reject) => {
      const since = opts.since ?? 0
      const check = (): boolean => {
        const hits = events.slice(since).filter(pred)
        if (hits.length < n) return false
        waiters.delete(check)
        clearTimeout(timer)
        resolve(hits.slice(0, n))
        return true
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(
          new Error(
            `expected ${n} matching decision event(s) within ${opts.timeoutMs ?? 20_000} ms; events since ${since}: ${JSON.stringify(events.slice(since), null, 1)}`,
          ),
        )
      }, opts.timeoutMs ?? 20_000)
      waiters.add(check)
      check()
    })

  return {
    running,
    port(kind) {
      const address = running.addresses[kind]
      if (!address) throw new Error(`the test proxy has no ${kind} listener`)
      return address.port
    },
    events,
    logLines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    mark: () => events.length,
    waitForEvent: async (pred, opts) => (await waitForEvents(1, pred, opts))[0] as DecisionEvent,
    waitForEvents,
    close: () => running.close(0).then(() => undefined),
  }
}

/** Every name the tests use; all of them are mapped to 127.0.0.1 so none is ever resolved for real. */
export const TEST_NAMES = [
  'allowed.test',
  'www.allowed.test',
  'other.allowed.test',
  'blocked.allowed.test',
  'a.test',
  'b.test',
  'evil.test',
  'evilallowed.test',
  'allowed.test.evil.test',
  'ssh.test',
  'api.anthropic.com',
  'pypi.org',
] as const

/** Overrides mapping every test name to 127.0.0.1 (plus `extra`). */
export function loopbackNames(
  extra: Record<string, string> = {},
): Record<string, string | readonly string[]> {
  return { ...Object.fromEntries(TEST_NAMES.map((n) => [n, '127.0.0.1'])), ...extra }
}
