// `npm run fuzz -- [TARGET|all ...] [--seconds N] [--ci] [--json] [--list]`
//
// Runs coverage-guided fuzz targets (jazzer.js, libFuzzer underneath), one
// process per target, one after the other, and prints per target: executions,
// executions per second, coverage (edges and features libFuzzer counts) and
// findings. Seeds come from fuzz/corpus/<target>/ (in the repository); inputs
// the run finds interesting go to fuzz/.out/corpus/<target>/ and findings to
// fuzz/.out/findings/<target>/ (both git-ignored). `--ci` runs each target for
// its CI budget and exits 1 if any target finds a property violation.
// `--replay FILE...` runs one target once on the given inputs (a finding, say).

import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { fuzzerEnvironment } from './jazzer-compat.js'
import { FUZZ_TARGETS, findTarget, type FuzzTargetInfo } from './targets.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const JAZZER_CLI = join(ROOT, 'node_modules', '@jazzer.js', 'core', 'dist', 'cli.js')
const MAX_INPUT_BYTES = 4096
/** The last line libFuzzer prints when a run ends. */
const FINAL_STATS_LINE = 'stat::peak_rss_mb:'
const EXIT_GRACE_MS = 3000

export interface TargetRun {
  readonly target: string
  readonly seconds: number
  readonly executions: number
  readonly execsPerSecond: number
  /** Edges and features libFuzzer has seen (its `cov:` and `ft:`), null if it printed none. */
  readonly coverage: { readonly edges: number; readonly features: number } | null
  readonly corpusSize: number | null
  readonly newUnits: number | null
  readonly findings: readonly { readonly file: string | null; readonly message: string }[]
  readonly exitCode: number | null
}

function lastMatch(text: string, pattern: RegExp): RegExpMatchArray | undefined {
  return [...text.matchAll(new RegExp(pattern.source, 'gm'))].at(-1)
}

/** What libFuzzer and jazzer.js printed, as numbers and findings. */
export function readFuzzerOutput(
  target: string,
  seconds: number,
  output: string,
  exitCode: number | null,
): TargetRun {
  const stat = (name: string): number | null => {
    const m = lastMatch(output, new RegExp(`^stat::${name}:\\s+(\\d+)`))
    return m ? Number(m[1]) : null
  }
  const cov = lastMatch(output, /cov: (\d+) ft: (\d+) corp: (\d+)\//)
  const files = [...output.matchAll(/Test unit written to (\S+)/g)].map((m) => m[1]!)
  // jazzer.js prints the exception that made the finding after "==PID== Uncaught Exception:".
  const messages = [
    ...output.matchAll(/^==\d+== (?:Uncaught Exception: )?(.*(?:\n(?!MS:| {4}at |==|\s*$).*)*)/gm),
  ]
    .map((m) => m[1]!.trim())
    .filter((m) => !m.startsWith('libFuzzer: run interrupted'))
  const failed = exitCode !== 0 || files.length > 0
  const findings = failed
    ? (files.length > 0 ? files : [null]).map((file, i) => ({
        file,
        message: messages[i] ?? messages[0] ?? `the fuzzer exited with ${String(exitCode)}`,
      }))
    : []
  return {
    target,
    seconds,
    executions: stat('number_of_executed_units') ?? 0,
    execsPerSecond: stat('average_exec_per_sec') ?? 0,
    coverage: cov ? { edges: Number(cov[1]), features: Number(cov[2]) } : null,
    corpusSize: cov ? Number(cov[3]) : null,
    newUnits: stat('new_units_added'),
    findings,
    exitCode,
  }
}

function runTarget(
  target: FuzzTargetInfo,
  seconds: number,
  env: NodeJS.ProcessEnv,
  replay: readonly string[],
  echo: boolean,
): Promise<TargetRun> {
  const out = join(ROOT, 'fuzz', '.out')
  const corpus = join(out, 'corpus', target.name)
  const findings = join(out, 'findings', target.name)
  mkdirSync(corpus, { recursive: true })
  mkdirSync(findings, { recursive: true })
  const inputs =
    replay.length > 0
      ? replay.map((p) => resolve(p))
      : [corpus, join(ROOT, 'fuzz', 'corpus', target.name)]
  const args = [
    JAZZER_CLI,
    join(ROOT, 'dist', 'fuzz', 'targets', `${target.name}.js`),
    ...inputs,
    ...(target.async ? [] : ['--sync']),
    '--includes',
    join(ROOT, 'dist', 'src') + '/',
    '--includes',
    join(ROOT, 'dist', 'fuzz') + '/',
    '--timeout',
    String(target.timeoutMs),
    // Our properties are the oracle; the generic detectors would flag the tests' own openssl calls.
    '--disable_bug_detectors',
    '.*',
    '--',
    `-max_total_time=${seconds}`,
    `-max_len=${MAX_INPUT_BYTES}`,
    '-print_final_stats=1',
    `-artifact_prefix=${findings}/`,
  ]
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    let stopped: NodeJS.Timeout | undefined
    const collect = (chunk: Buffer): void => {
      output += chunk.toString()
      if (echo) process.stderr.write(chunk)
      // libFuzzer is done once it prints its final stats. A target with servers on
      // sockets keeps the event loop alive after that, so end the process if it
      // does not exit by itself.
      if (stopped === undefined && output.includes(FINAL_STATS_LINE))
        stopped = setTimeout(() => child.kill('SIGTERM'), EXIT_GRACE_MS)
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    child.on('error', fail)
    child.on('close', (code) => {
      clearTimeout(stopped)
      const ended = code ?? (output.includes(FINAL_STATS_LINE) ? 0 : null)
      done(readFuzzerOutput(target.name, seconds, output, ended))
    })
  })
}

function table(runs: readonly TargetRun[]): string {
  const rows = [
    [
      'target',
      'seconds',
      'executions',
      'execs/s',
      'edges',
      'features',
      'corpus',
      'new',
      'findings',
    ],
    ...runs.map((r) => [
      r.target,
      String(r.seconds),
      String(r.executions),
      String(r.execsPerSecond),
      String(r.coverage?.edges ?? '-'),
      String(r.coverage?.features ?? '-'),
      String(r.corpusSize ?? '-'),
      String(r.newUnits ?? '-'),
      String(r.findings.length),
    ]),
  ]
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)))
  return rows
    .map((row) =>
      row
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join('  '),
    )
    .join('\n')
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      seconds: { type: 'string' },
      ci: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      replay: { type: 'string', multiple: true, default: [] },
    },
  })
  if (values.list) {
    if (values.json) console.log(JSON.stringify(FUZZ_TARGETS, null, 2))
    else for (const t of FUZZ_TARGETS) console.log(`${t.name.padEnd(18)} ${t.description}`)
    return 0
  }
  const names =
    positionals.length === 0 || positionals.includes('all')
      ? FUZZ_TARGETS.map((t) => t.name)
      : positionals
  const targets = names.map((name) => {
    const target = findTarget(name)
    if (!target)
      throw new Error(`unknown fuzz target "${name}"; \`npm run fuzz -- --list\` shows them`)
    return target
  })
  if (values.replay.length > 0 && targets.length !== 1)
    throw new Error('--replay needs exactly one target')
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds)
  if (seconds !== undefined && !(Number.isInteger(seconds) && seconds > 0))
    throw new Error(`--seconds must be a whole number of seconds, got "${values.seconds}"`)

  const env = fuzzerEnvironment(ROOT)
  const runs: TargetRun[] = []
  for (const target of targets) {
    const budget = seconds ?? (values.ci ? target.ciSeconds : 60)
    if (!values.json)
      process.stderr.write(
        values.replay.length > 0
          ? `replaying ${values.replay.length} input(s) on ${target.name}…\n`
          : `fuzzing ${target.name} for ${budget} s…\n`,
      )
    const run = await runTarget(target, budget, env, values.replay, values.verbose)
    runs.push(run)
    for (const f of run.findings)
      process.stderr.write(
        `\nFINDING in ${run.target}${f.file ? ` (input saved to ${f.file})` : ''}:\n${f.message}\n`,
      )
  }
  if (values.json) console.log(JSON.stringify(runs, null, 2))
  else console.log(`\n${table(runs)}`)
  const found = runs.reduce((n, r) => n + r.findings.length, 0)
  if (found > 0 && !values.json)
    console.log(`\n${found} finding(s). Replay one with: npm run fuzz -- TARGET --replay FILE`)
  return found > 0 ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`fuzz: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(2)
  },
)
