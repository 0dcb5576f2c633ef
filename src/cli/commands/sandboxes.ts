// `isorun ls`, `isorun logs ID [--blocked] [--follow]`, `isorun rm ID...`.

import { parseArgs, withUsage } from '../args.js'
import { call, clientFrom, CLIENT_OPTIONS, formatEvent } from '../client.js'
import { UsageError } from '../errors.js'
import { printJson, printTable } from '../output.js'

export async function lsCommand(argv: string[]): Promise<number> {
  const usage = 'usage: isorun ls [--json] [--url URL] [--api-key KEY]'
  const { values, positionals } = withUsage(usage, () =>
    parseArgs({
      args: argv,
      options: { json: { type: 'boolean' }, ...CLIENT_OPTIONS },
      allowPositionals: true,
    }),
  )
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`, usage)
  const sandboxes = await call(() => clientFrom(values).list())
  const infos = sandboxes.map((s) => s.info)
  if (values.json) printJson(infos)
  else if (infos.length === 0) process.stdout.write('no sandboxes\n')
  else
    printTable(
      ['ID', 'IMAGE', 'PROFILE', 'STATUS', 'CREATED', 'EXPIRES'],
      infos.map((s) => [
        s.id,
        s.image,
        s.networkProfile,
        s.status,
        s.createdAt,
        s.expiresAt ?? '-',
      ]),
    )
  return 0
}

export async function logsCommand(argv: string[]): Promise<number> {
  const usage =
    'usage: isorun logs ID [--blocked] [--follow] [--limit N] [--json] [--url URL] [--api-key KEY]'
  const { values, positionals } = withUsage(usage, () =>
    parseArgs({
      args: argv,
      options: {
        blocked: { type: 'boolean' },
        follow: { type: 'boolean', short: 'f' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
        ...CLIENT_OPTIONS,
      },
      allowPositionals: true,
    }),
  )
  if (positionals.length !== 1) throw new UsageError('expected one sandbox id', usage)
  const limit = values.limit === undefined ? 100 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1)
    throw new UsageError('--limit must be a positive integer', usage)
  const isorun = clientFrom(values)
  const sandbox = await call(() => isorun.get(positionals[0] as string))
  // --blocked: refusals and report mode's would-deny decisions, in order.
  const action = values.blocked ? ('blocked' as const) : undefined
  let since: string | undefined
  const show = async (): Promise<void> => {
    const events = await call(() =>
      sandbox.networkEvents({ ...(action ? { action } : {}), limit, ...(since ? { since } : {}) }),
    )
    for (const e of events)
      process.stdout.write(values.json ? `${JSON.stringify(e)}\n` : `${formatEvent(e)}\n`)
    const last = events[events.length - 1]
    if (last) since = last.time
  }
  await show()
  if (!values.follow) return 0
  // Follow: poll until interrupted (or the sandbox goes away).
  return new Promise<number>((resolve, reject) => {
    const timer = setInterval(
      () => void show().catch((err: unknown) => (clearInterval(timer), reject(err))),
      1000,
    )
    process.once('SIGINT', () => (clearInterval(timer), resolve(0)))
  })
}

export async function rmCommand(argv: string[]): Promise<number> {
  const usage = 'usage: isorun rm ID... | isorun rm --all   [--url URL] [--api-key KEY]'
  const { values, positionals } = withUsage(usage, () =>
    parseArgs({
      args: argv,
      options: { all: { type: 'boolean' }, ...CLIENT_OPTIONS },
      allowPositionals: true,
    }),
  )
  const isorun = clientFrom(values)
  const ids = values.all ? (await call(() => isorun.list())).map((s) => s.id) : positionals
  if (ids.length === 0)
    throw new UsageError(
      values.all ? 'there are no sandboxes' : 'expected sandbox ids (or --all)',
      usage,
    )
  let failed = 0
  for (const id of ids) {
    try {
      const sandbox = await call(() => isorun.get(id))
      await call(() => sandbox.destroy())
      process.stdout.write(`removed ${id}\n`)
    } catch (err) {
      failed++
      process.stderr.write(`isorun: ${id}: ${(err as Error).message}\n`)
    }
  }
  return failed > 0 ? 1 : 0
}
