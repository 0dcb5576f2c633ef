// npm run bench:soak — load and faults against the egress proxy and the
// runner, bounded in time, with a pass/fail check for every promise:
//
//   tunnels    1,000 concurrent CONNECT tunnels with TLS to a loopback upstream,
//              a small request on each every few seconds for 60 s: no errors;
//              the proxy's RSS and file descriptors back to baseline after
//   slowloris  1,000 connections that start and never finish (partial HTTP heads,
//              partial ClientHellos on the transparent listener and inside a
//              CONNECT tunnel, partial SOCKS greetings): new clients' latency
//              (p50/p99, plain HTTP and CONNECT+TLS) while they are held,
//              against the same clients without them; when the proxy drops them
//   faults     10,000 repetitions of each: an upstream that resets mid-transfer,
//              and a client that vanishes mid-transfer, through CONNECT tunnels
//              and plain HTTP forwarding; sockets and memory after
//   creates    20 concurrent sandbox creates: all succeed, distinct subnets, no
//              leftovers (containers, networks, volumes) after destroy
//   kill       the runner killed with SIGKILL at each step of a create; nothing is
//              left once it is restarted
//   dockerd    dockerd restarted while sandboxes run: the runner reconnects, the
//              sandboxes are usable again (or reported stopped)
//
// After every proxy load: no connection to the upstreams left open, none in
// CLOSE_WAIT, none with unread data (a paused stream), on the proxy's side and
// the upstream's (/proc/PID/fd and /proc/net/tcp{,6}).
//
// The scenarios live in bench/lib/soak-proxy.ts (with the leak checks of
// soak-leaks.ts) and bench/lib/soak-docker.ts. The proxy, the upstreams and
// the runner run as child processes, so their
// memory, descriptors and sockets are their own. Traffic stays on loopback,
// plus the containers and networks the Docker scenarios create. The Docker
// scenarios restart and disturb the shared engine: they take the e2e lock
// (/tmp/isorun-e2e.lock) themselves, waiting for running end-to-end tests; do
// not wrap this command in another flock on that file (the bench sees an
// ancestor holding it and goes on, but a sibling would wait forever).
//
// Options:
//   --only LIST       scenarios to run (default: all): tunnels,slowloris,faults,creates,kill,dockerd
//   --quick           a smaller, shorter run (a minute or two): 200 tunnels for 10 s,
//                     400 slow connections, 1,000 repetitions per fault
//   --json            the report as JSON on stdout (progress stays on stderr)
//   --tunnels N, --tunnel-seconds S, --slow N, --reps N, --creates N   scale by hand

import { readFileSync } from 'node:fs'
import { dockerScenarios, type DockerScenario } from './lib/soak-docker.js'
import { proxyScenarios, type ProxyScenario } from './lib/soak-proxy.js'
import { renderReport, type ScenarioResult } from './lib/soak-report.js'

// ---------------------------------------------------------------- options

const args = process.argv.slice(2)
function option(name: string): string | undefined {
  const at = args.indexOf(name)
  if (at < 0) return undefined
  const next = args[at + 1]
  return next !== undefined && !next.startsWith('--') ? next : ''
}
function count(name: string, fallback: number): number {
  const raw = option(name)
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} "${raw}" must be a whole number ≥ 1`)
  return n
}
const ALL = ['tunnels', 'slowloris', 'faults', 'creates', 'kill', 'dockerd'] as const
type Scenario = (typeof ALL)[number]
const ONLY = ((): Scenario[] => {
  const raw = option('--only')
  if (!raw) return [...ALL]
  const picked = raw.split(',').filter(Boolean)
  const unknown = picked.filter((p) => !(ALL as readonly string[]).includes(p))
  if (unknown.length > 0)
    throw new Error(`--only: unknown scenario ${unknown.join(', ')}; known: ${ALL.join(', ')}`)
  return picked as Scenario[]
})()
const QUICK = option('--quick') !== undefined
const JSON_OUT = option('--json') !== undefined
const TUNNELS = count('--tunnels', QUICK ? 200 : 1000)
const TUNNEL_SECONDS = count('--tunnel-seconds', QUICK ? 10 : 60)
const SLOW = count('--slow', QUICK ? 400 : 1000)
const REPS = count('--reps', QUICK ? 1000 : 10_000)
const CREATES = count('--creates', 20)
const PROBES = QUICK ? 100 : 200

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (process.platform !== 'linux') throw new Error('bench:soak reads /proc: Linux only')
  const results: ScenarioResult[] = []
  const started = Date.now()
  const proxy = ONLY.filter(
    (s): s is ProxyScenario => s === 'tunnels' || s === 'slowloris' || s === 'faults',
  )
  if (proxy.length > 0)
    results.push(
      ...(await proxyScenarios(proxy, {
        tunnels: TUNNELS,
        tunnelSeconds: TUNNEL_SECONDS,
        slow: SLOW,
        reps: REPS,
        probes: PROBES,
      })),
    )
  const docker = ONLY.filter(
    (s): s is DockerScenario => s === 'creates' || s === 'kill' || s === 'dockerd',
  )
  if (docker.length > 0) results.push(...(await dockerScenarios(docker, { creates: CREATES })))
  const header = [
    `bench:soak — node ${process.version}, ${readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? '?'} CPUs, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    `scenarios: ${ONLY.join(', ')}${QUICK ? ' (--quick)' : ''}; ${((Date.now() - started) / 1000).toFixed(0)} s in all`,
  ]
  process.stdout.write(
    JSON_OUT ? `${JSON.stringify({ header, results }, null, 2)}\n` : renderReport(header, results),
  )
  if (results.some((r) => r.checks.some((c) => !c.ok))) process.exitCode = 1
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    process.stderr.write(`bench:soak failed: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(2)
  },
)
