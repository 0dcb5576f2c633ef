// Summarizes a V8 .cpuprofile (node --cpu-prof): self time by function, self
// time by area (http-proxy, pino, Node's http, streams, TLS, GC, isorun's own
// files…), and inclusive time of isorun's own functions.
//
//   node dist/bench/lib/cpuprofile.js FILE.cpuprofile [--top N]
//   node dist/bench/lib/cpuprofile.js FILE.cpuprofile --callers NAME   (heaviest paths into NAME)

import { readFileSync } from 'node:fs'

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: readonly number[]
}

export interface CpuProfile {
  /** µs on the monotonic clock (the same as process.hrtime's on Linux). */
  readonly startTime: number
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

/** Areas, matched in order against a frame's url (or name for V8's pseudo-frames). */
const AREAS: readonly [string, (f: CallFrame) => boolean][] = [
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['idle', (f) => f.functionName === '(idle)'],
  ['V8/native (program)', (f) => f.functionName === '(program)'],
  ['undici (npm)', (f) => f.url.includes('node_modules/undici/')],
  [
    'pino / sonic-boom (npm)',
    (f) =>
      /node_modules\/(pino|sonic-boom|pino-std-serializers|fast-redact|quick-format-unescaped|atomic-sleep|fast-safe-stringify|on-exit-leak-free|thread-stream|safe-stable-stringify)\//.test(
        f.url,
      ),
  ],
  ['other npm', (f) => f.url.includes('node_modules/')],
  ['isorun policy (decide etc.)', (f) => /\/src\/policy\//.test(f.url)],
  ['isorun decision log', (f) => /\/src\/proxy\/(decision-log|metrics|context)\.js/.test(f.url)],
  ['isorun http-forward', (f) => /\/src\/proxy\/http-(forward|listener)\.js/.test(f.url)],
  [
    'isorun tunnel/peek/upstream',
    (f) => /\/src\/proxy\/(tunnel|peek|upstream|sniff\/)/.test(f.url),
  ],
  ['isorun other', (f) => /\/src\//.test(f.url)],
  [
    'Node http (parser, server, client, agent)',
    (f) => /node:_http_|node:internal\/http/.test(f.url),
  ],
  ['Node streams', (f) => /node:internal\/streams\/|node:stream/.test(f.url)],
  ['Node TLS', (f) => /node:_tls|node:tls|node:internal\/tls/.test(f.url)],
  [
    'Node net / stream_base (socket I/O)',
    (f) => /node:net|node:internal\/stream_base_commons|node:internal\/net/.test(f.url),
  ],
  [
    'Node timers / events / task queues',
    (f) =>
      /node:(internal\/)?(timers|events|process\/task_queues|async_hooks|internal\/async_hooks)/.test(
        f.url,
      ),
  ],
  ['Node other', (f) => f.url.startsWith('node:')],
]

function areaOf(frame: CallFrame): string | undefined {
  for (const [name, match] of AREAS) if (match(frame)) return name
  return undefined
}

function label(f: CallFrame): string {
  const file = f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')
  return `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : '(native)'}`
}

export interface Summary {
  readonly totalMs: number
  /** Total minus idle. */
  readonly busyMs: number
  readonly byFunction: readonly { readonly name: string; readonly ms: number }[]
  readonly byArea: readonly { readonly name: string; readonly ms: number }[]
  /** isorun's own functions (dist/src), inclusive of everything they call. */
  readonly isorunInclusive: readonly { readonly name: string; readonly ms: number }[]
}

/** A time window on the monotonic clock, µs: only samples inside it count. */
export interface Window {
  readonly fromUs: number
  readonly toUs: number
}

function selfTimes(profile: CpuProfile, window?: Window): Map<number, number> {
  const selfUs = new Map<number, number>()
  let t = profile.startTime
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0
    t += delta
    if (window && (t < window.fromUs || t > window.toUs)) return
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  })
  return selfUs
}

export function summarize(profile: CpuProfile, window?: Window): Summary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const selfUs = selfTimes(profile, window)

  // A native leaf (no url: a C++ binding such as writev) counts in its caller's area.
  const areaCache = new Map<number, string>()
  const nodeArea = (id: number): string => {
    const cached = areaCache.get(id)
    if (cached) return cached
    const node = byId.get(id) as ProfileNode
    let area = areaOf(node.callFrame)
    if (!area) {
      const p = parent.get(id)
      area = p !== undefined && node.callFrame.url === '' ? nodeArea(p) : 'other'
    }
    areaCache.set(id, area)
    return area
  }

  const fn = new Map<string, number>()
  const area = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id) as ProfileNode
    total += us
    if (node.callFrame.functionName === '(idle)') idle += us
    const name = label(node.callFrame)
    fn.set(name, (fn.get(name) ?? 0) + us)
    const a = nodeArea(id)
    area.set(a, (area.get(a) ?? 0) + us)
    // Inclusive time of isorun's functions: each function once per stack.
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = (byId.get(at) as ProfileNode).callFrame
      if (!/\/dist\/src\//.test(f.url)) continue
      const l = label(f)
      if (seen.has(l)) continue
      seen.add(l)
      inclusive.set(l, (inclusive.get(l) ?? 0) + us)
    }
  }
  const sorted = (m: Map<string, number>): { name: string; ms: number }[] =>
    [...m].map(([name, us]) => ({ name, ms: us / 1000 })).sort((a, b) => b.ms - a.ms)
  return {
    totalMs: total / 1000,
    busyMs: (total - idle) / 1000,
    byFunction: sorted(fn).filter((f) => !f.name.startsWith('(idle)')),
    byArea: sorted(area).filter((a) => a.name !== 'idle'),
    isorunInclusive: sorted(inclusive),
  }
}

export function formatSummary(
  title: string,
  s: Summary,
  top = 25,
  perOp?: number,
  unit = 'op',
): string {
  const pct = (ms: number): string => `${((100 * ms) / s.busyMs).toFixed(1).padStart(5)}%`
  const us = (ms: number): string =>
    perOp ? `${((ms * 1000) / perOp).toFixed(1).padStart(8)} µs/${unit}` : ''
  const rows = (list: readonly { name: string; ms: number }[], n: number): string[] =>
    list
      .slice(0, n)
      .map((r) => `  ${pct(r.ms)} ${r.ms.toFixed(0).padStart(7)} ms ${us(r.ms)}  ${r.name}`)
  return [
    `${title}: ${s.busyMs.toFixed(0)} ms busy (of ${s.totalMs.toFixed(0)} ms profiled)${perOp ? `, ${Math.round(perOp)} ${unit}s` : ''}`,
    " self time by area (native leaves count in their caller's area):",
    ...rows(s.byArea, 30),
    ` self time by function (top ${top}):`,
    ...rows(s.byFunction, top),
    ' inclusive time of isorun functions (top 15):',
    ...rows(s.isorunInclusive, 15),
  ].join('\n')
}

/** The heaviest call paths (self time) into functions whose label contains `needle`. */
export function callers(
  profile: CpuProfile,
  needle: string,
  top = 8,
  depth = 8,
  window?: Window,
): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const selfUs = selfTimes(profile, window)
  const paths = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const node = byId.get(id) as ProfileNode
    if (!label(node.callFrame).includes(needle)) continue
    const frames: string[] = []
    for (let at = parent.get(id); at !== undefined && frames.length < depth; at = parent.get(at)) {
      const f = (byId.get(at) as ProfileNode).callFrame
      if (f.functionName === '(root)') break
      frames.push(label(f))
    }
    const key = `${label(node.callFrame)}\n      <- ${frames.join('\n      <- ')}`
    paths.set(key, (paths.get(key) ?? 0) + us)
  }
  return [...paths]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([path, us]) => `  ${(us / 1000).toFixed(0).padStart(6)} ms  ${path}`)
    .join('\n')
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const file = process.argv[2]
  if (!file) {
    process.stderr.write('usage: node dist/bench/lib/cpuprofile.js FILE.cpuprofile [--top N]\n')
    process.exit(2)
  }
  const topAt = process.argv.indexOf('--top')
  const top = topAt > 0 ? Number(process.argv[topAt + 1]) : 25
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const callersAt = process.argv.indexOf('--callers')
  if (callersAt > 0) {
    process.stdout.write(`${callers(profile, process.argv[callersAt + 1] ?? '')}\n`)
  } else {
    process.stdout.write(`${formatSummary(file, summarize(profile), top)}\n`)
  }
}
