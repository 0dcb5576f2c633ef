// `isorun run --profile P --image I -- CMD…`: create a sandbox, run one command,
// print its output, show what was blocked, destroy it, exit with the command's code.

import { pipeline } from 'node:stream/promises'
import type { NetworkPolicy, ProcessResult, Sandbox } from 'isorun'
import { parseArgs, splitList, withUsage } from '../args.js'
import { call, clientFrom, CLIENT_OPTIONS, formatEvent } from '../client.js'
import { UsageError } from '../errors.js'
import { printJson } from '../output.js'

const USAGE = `usage: isorun run (--profile NAME | --allow RULES [--deny RULES]) --image IMAGE [options] -- CMD [ARG...]

  --profile NAME     network profile (default: the runner's default, locked-down)
  --allow RULES      explicit allow list instead of a profile (repeatable, comma-separated)
  --deny RULES       explicit deny rules
  --image IMAGE      container image, e.g. python:3.12-slim
  --env K=V          environment variable in the sandbox (repeatable)
  --timeout SECONDS  command timeout (default 600)
  --keep             do not destroy the sandbox afterwards (prints its id)
  --json             print { sandbox, exitCode, stdout, stderr, blocked } as JSON
  --url URL, --api-key KEY   runner API (default ISORUN_URL, ISORUN_API_KEY)`

/** Runs the command with its stdout and stderr passed through to ours as they come. */
async function runPassingOutput(
  sandbox: Sandbox,
  command: string[],
  timeoutMs: number,
): Promise<ProcessResult> {
  const proc = await sandbox.spawn(command, { timeoutMs })
  const passed = [
    pipeline(proc.stdout, process.stdout, { end: false }),
    pipeline(proc.stderr, process.stderr, { end: false }),
  ]
  try {
    return await proc.wait()
  } finally {
    await Promise.allSettled(passed)
  }
}

export async function runCommand(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--')
  const own = dash >= 0 ? argv.slice(0, dash) : argv
  const cmd = dash >= 0 ? argv.slice(dash + 1) : []
  const { values, positionals } = withUsage(USAGE, () =>
    parseArgs({
      args: own,
      options: {
        profile: { type: 'string' },
        allow: { type: 'string', multiple: true },
        deny: { type: 'string', multiple: true },
        image: { type: 'string' },
        env: { type: 'string', multiple: true },
        timeout: { type: 'string' },
        keep: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
        ...CLIENT_OPTIONS,
      },
      allowPositionals: true,
    }),
  )
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const command = [...positionals, ...cmd]
  if (!values.image) throw new UsageError('--image is required', USAGE)
  if (command.length === 0) throw new UsageError('no command given; put it after --', USAGE)
  const allow = splitList(values.allow)
  const deny = splitList(values.deny)
  if (values.profile !== undefined && allow.length + deny.length > 0) {
    throw new UsageError('--profile and --allow/--deny are mutually exclusive', USAGE)
  }
  const env: Record<string, string> = {}
  for (const pair of values.env ?? []) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new UsageError(`--env "${pair}": write NAME=value`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  const timeoutSeconds = values.timeout === undefined ? 600 : Number(values.timeout)
  if (!(timeoutSeconds > 0)) throw new UsageError('--timeout must be a number of seconds above 0')
  const network: NetworkPolicy | undefined =
    allow.length + deny.length > 0
      ? { mode: allow.length > 0 ? 'allow-list' : 'allow-all', allow, deny }
      : undefined

  const isorun = clientFrom(values)
  const progress = (text: string): void => {
    if (!values.json) process.stderr.write(`isorun: ${text}\n`)
  }
  const started = Date.now()
  progress(
    `creating a sandbox from ${values.image} (${values.profile ?? (network ? 'custom network' : 'default profile')})…`,
  )
  const sandbox = await call(() =>
    isorun.create({
      image: values.image as string,
      ...(values.profile !== undefined ? { networkProfile: values.profile } : {}),
      ...(network ? { network } : {}),
      ...(Object.keys(env).length > 0 ? { env } : {}),
    }),
  )
  progress(
    `sandbox ${sandbox.id} ready in ${((Date.now() - started) / 1000).toFixed(1)} s; running ${JSON.stringify(command.join(' '))}`,
  )
  try {
    const timeoutMs = timeoutSeconds * 1000
    // For people, output as it comes; for --json, all of it in one object.
    const result = values.json
      ? await call(() => sandbox.exec(command, { timeoutMs }))
      : await call(() => runPassingOutput(sandbox, command, timeoutMs))
    const blocked = await call(() => sandbox.networkEvents({ action: 'deny', limit: 100 })).catch(
      () => [],
    )
    if (values.json) {
      printJson({ sandbox: sandbox.id, ...result, blocked })
    } else {
      if (result.timedOut) progress(`the command timed out after ${timeoutSeconds} s`)
      if (blocked.length > 0) {
        progress(`blocked ${blocked.length} connection${blocked.length === 1 ? '' : 's'}:`)
        for (const e of blocked) process.stderr.write(`  ${formatEvent(e)}\n`)
      }
    }
    return result.exitCode
  } finally {
    if (values.keep) progress(`kept sandbox ${sandbox.id} (isorun rm ${sandbox.id} to remove it)`)
    else await call(() => sandbox.destroy())
  }
}
