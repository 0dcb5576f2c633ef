// `isorun approvals [--follow] [--sandbox ID] [--json]`: requests held for an
// approval; `isorun approve ID --once|--sandbox|--ttl 10m`; `isorun deny ID`.

import os from 'node:os'
import type { PendingApproval } from 'isorun'
import { LimitError, parseDuration } from '../../policy/index.js'
import { parseArgs, withUsage } from '../args.js'
import { call, clientFrom, CLIENT_OPTIONS } from '../client.js'
import { UsageError } from '../errors.js'
import { printJson, printTable } from '../output.js'

/** Who answers, for the log: `cli:` and the user's login name, unless --by says otherwise. */
function answerer(by: string | undefined): string {
  if (by) return by
  try {
    return `cli:${os.userInfo().username}`
  } catch {
    return 'cli'
  }
}

function target(a: PendingApproval): string {
  const where =
    a.port === 0 ? `${a.host} (DNS)` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
  return a.method ? `${where} ${a.method} ${a.path ?? ''}`.trimEnd() : where
}

function row(a: PendingApproval): string[] {
  const left = Math.max(0, Math.round((Date.parse(a.expiresAt) - Date.now()) / 1000))
  return [a.id, a.sandbox, a.protocol, target(a), String(a.waiting), `${left}s`]
}

const HEADER = ['ID', 'SANDBOX', 'PROTOCOL', 'TARGET', 'WAITING', 'EXPIRES IN']

export async function approvalsCommand(argv: string[]): Promise<number> {
  const usage =
    'usage: isorun approvals [--follow] [--sandbox ID] [--json] [--url URL] [--api-key KEY]'
  const { values, positionals } = withUsage(usage, () =>
    parseArgs({
      args: argv,
      options: {
        follow: { type: 'boolean', short: 'f' },
        sandbox: { type: 'string' },
        json: { type: 'boolean' },
        ...CLIENT_OPTIONS,
      },
      allowPositionals: true,
    }),
  )
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`, usage)
  const isorun = clientFrom(values)
  const sandbox = values.sandbox ? { sandbox: values.sandbox } : {}
  if (!values.follow) {
    const pending = await call(() => isorun.pendingApprovals(sandbox))
    if (values.json) printJson(pending)
    else if (pending.length === 0) process.stdout.write('no pending approvals\n')
    else printTable(HEADER, pending.map(row))
    return 0
  }
  // Follow: one line per approval as it comes, until interrupted.
  const controller = new AbortController()
  process.once('SIGINT', () => controller.abort())
  if (!values.json)
    process.stderr.write(
      'waiting for approvals (answer with: isorun approve ID --once|--sandbox [--ttl 10m], isorun deny ID; Ctrl-C to stop)\n',
    )
  await call(async () => {
    for await (const approval of isorun.approvals({ ...sandbox, signal: controller.signal })) {
      process.stdout.write(
        values.json ? `${JSON.stringify(approval)}\n` : `${row(approval).join('  ')}\n`,
      )
    }
  })
  return 0
}

export async function approveCommand(argv: string[]): Promise<number> {
  const usage =
    'usage: isorun approve ID (--once | --sandbox [--ttl 10m]) [--by NAME] [--json] [--url URL] [--api-key KEY]'
  const { values, positionals } = withUsage(usage, () =>
    parseArgs({
      args: argv,
      options: {
        once: { type: 'boolean' },
        sandbox: { type: 'boolean' },
        ttl: { type: 'string' },
        by: { type: 'string' },
        json: { type: 'boolean' },
        ...CLIENT_OPTIONS,
      },
      allowPositionals: true,
    }),
  )
  if (positionals.length !== 1) throw new UsageError('expected one approval id', usage)
  const forSandbox = values.sandbox === true || values.ttl !== undefined
  if (values.once && forSandbox)
    throw new UsageError('give --once or --sandbox (--ttl implies --sandbox), not both', usage)
  if (!values.once && !forSandbox)
    throw new UsageError(
      'say how: --once (this request) or --sandbox [--ttl 10m] (a live rule)',
      usage,
    )
  let ttlMs: number | undefined
  if (values.ttl !== undefined) {
    try {
      ttlMs = parseDuration(values.ttl)
    } catch (err) {
      if (err instanceof LimitError) throw new UsageError(`--ttl: ${err.message}`, usage)
      throw err
    }
  }
  const result = await call(() =>
    clientFrom(values).answerApproval(positionals[0] as string, {
      answer: forSandbox ? 'sandbox' : 'once',
      ...(ttlMs !== undefined ? { ttlMs } : {}),
      by: answerer(values.by),
    }),
  )
  if (values.json) printJson(result)
  else
    process.stdout.write(
      result.answer === 'once'
        ? `allowed once: ${result.id}\n`
        : `allowed for the sandbox: ${result.rule ?? ''}${result.expiresAt ? ` until ${result.expiresAt}` : ''}\n`,
    )
  return 0
}

export async function denyCommand(argv: string[]): Promise<number> {
  const usage = 'usage: isorun deny ID [--by NAME] [--json] [--url URL] [--api-key KEY]'
  const { values, positionals } = withUsage(usage, () =>
    parseArgs({
      args: argv,
      options: { by: { type: 'string' }, json: { type: 'boolean' }, ...CLIENT_OPTIONS },
      allowPositionals: true,
    }),
  )
  if (positionals.length !== 1) throw new UsageError('expected one approval id', usage)
  const result = await call(() =>
    clientFrom(values).answerApproval(positionals[0] as string, {
      answer: 'deny',
      by: answerer(values.by),
    }),
  )
  if (values.json) printJson(result)
  else process.stdout.write(`denied: ${result.id}\n`)
  return 0
}
