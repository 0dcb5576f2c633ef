// `isorun profiles [--json]`, `isorun profiles show NAME [--json]` and
// `isorun profiles learn SANDBOX_ID [--name NAME] [--base PROFILE] [--json]`.

import { describeEndpointRule, parseRule } from '../../policy/index.js'
import { parseArgs, PROFILES_DIR_OPTION, withUsage } from '../args.js'
import { openCatalogue, unknownProfile } from '../catalogue.js'
import { call, clientFrom, CLIENT_OPTIONS } from '../client.js'
import { UsageError } from '../errors.js'
import { formatTable, printJson, printTable } from '../output.js'

const USAGE =
  'usage: isorun profiles [--json] | isorun profiles show NAME [--json]   [--profiles-dir DIR]\n' +
  '       isorun profiles learn SANDBOX_ID [--name NAME] [--base PROFILE] [--json] [--url URL] [--api-key KEY]'

export function profilesCommand(argv: string[]): number | Promise<number> {
  if (argv[0] === 'learn') return learnCommand(argv.slice(1))
  const { values, positionals } = withUsage(USAGE, () =>
    parseArgs({
      args: argv,
      options: { json: { type: 'boolean' }, ...PROFILES_DIR_OPTION },
      allowPositionals: true,
    }),
  )
  const catalogue = openCatalogue(values['profiles-dir'])
  if (positionals.length === 0) {
    const list = catalogue.list()
    if (values.json) printJson(list)
    else
      printTable(
        ['NAME', 'MODE', 'DESCRIPTION'],
        list.map((p) => [p.name, p.mode, p.description]),
      )
    return 0
  }
  if (positionals[0] !== 'show' || positionals.length !== 2)
    throw new UsageError('expected "profiles" or "profiles show NAME"', USAGE)
  const name = positionals[1] as string
  const profile = catalogue.get(name)
  if (!profile) throw unknownProfile(name, catalogue)
  const rules = (list: typeof profile.allow) =>
    list.map(({ rule, from }) => ({ rule, canonical: parseRule(rule).canonical, from }))
  const endpoints = profile.endpoints.map((e) => ({
    host: e.host,
    from: e.from,
    rules: e.rules.map((r) => ({ ...r })),
  }))
  if (values.json) {
    printJson({
      name: profile.name,
      description: profile.description,
      mode: profile.mode,
      file: profile.file,
      includes: profile.includes,
      allow: rules(profile.allow),
      deny: rules(profile.deny),
      endpoints,
      inspect: profile.inspect,
    })
    return 0
  }
  const lines = [
    `${profile.name} (${profile.mode})${profile.description ? ` — ${profile.description}` : ''}`,
    `file: ${profile.file}`,
  ]
  if (profile.includes.length > 0) lines.push(`includes: ${profile.includes.join(', ')}`)
  if (profile.inspect.length > 0)
    lines.push(`inspect: TLS intercepted for the hosts allowed by ${profile.inspect.join(', ')}`)
  for (const [title, list] of [
    ['allow', profile.allow],
    ['deny', profile.deny],
  ] as const) {
    lines.push('', `${title}:`)
    if (list.length === 0) lines.push('  (none)')
    else
      lines.push(
        indent(
          formatTable(
            null,
            rules(list).map((r) => [r.canonical, `from ${r.from}`]),
          ),
        ),
      )
  }
  if (endpoints.length > 0) {
    lines.push('', 'endpoints:')
    for (const e of endpoints) {
      lines.push(`  ${e.host} (from ${e.from})`)
      for (const r of e.rules) lines.push(`    ${r.action.padEnd(5)}  ${describeEndpointRule(r)}`)
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')
}

/**
 * Prints the profile the runner learned from a sandbox's decisions: the YAML
 * on stdout (ready for `> NAME.yaml`), the difference from --base on stderr.
 */
async function learnCommand(argv: string[]): Promise<number> {
  const { values, positionals } = withUsage(USAGE, () =>
    parseArgs({
      args: argv,
      options: {
        name: { type: 'string' },
        base: { type: 'string' },
        json: { type: 'boolean' },
        ...CLIENT_OPTIONS,
      },
      allowPositionals: true,
    }),
  )
  if (positionals.length !== 1) throw new UsageError('expected one sandbox id', USAGE)
  const isorun = clientFrom(values)
  const sandbox = await call(() => isorun.get(positionals[0] as string))
  const learned = await call(() =>
    sandbox.suggestProfile({
      ...(values.base ? { base: values.base } : {}),
      ...(values.name ? { name: values.name } : {}),
    }),
  )
  if (values.json) {
    printJson(learned)
    return 0
  }
  process.stdout.write(learned.yaml)
  if (learned.diff) {
    const lines = [`compared with ${learned.diff.base}:`]
    for (const added of learned.diff.added) lines.push(`  + ${added}`)
    for (const unused of learned.diff.unused) lines.push(`  - ${unused} (not used)`)
    if (lines.length === 1)
      lines.push('  (nothing to add: the base allows everything the run used)')
    process.stderr.write(`${lines.join('\n')}\n`)
  }
  return 0
}
