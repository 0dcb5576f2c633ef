#!/usr/bin/env node
// The `isorun` command.

import { UsageError } from './errors.js'
import { runProgram } from './program.js'

type Command = (argv: string[]) => number | Promise<number>

// Each command's modules load when it runs: `isorun proxy`, a long-lived sidecar,
// must not hold the profile parser (YAML) and the rest in memory for nothing.

const COMMANDS: Record<string, { run: () => Promise<Command>; summary: string }> = {
  profiles: {
    run: async () => (await import('./commands/profiles.js')).profilesCommand,
    summary: "list profiles, show one profile's resolved rules, or learn one from a sandbox",
  },
  check: {
    run: async () => (await import('./commands/check.js')).checkCommand,
    summary: 'decide whether a profile allows a URL or host[:port]',
  },
  runner: {
    run: async () => (await import('./commands/runner.js')).runnerCommand,
    summary: 'run the runner API (sandboxes on Docker)',
  },
  run: {
    run: async () => (await import('./commands/run.js')).runCommand,
    summary: 'create a sandbox, run one command in it, show what was blocked, destroy it',
  },
  ls: {
    run: async () => (await import('./commands/sandboxes.js')).lsCommand,
    summary: 'list sandboxes',
  },
  logs: {
    run: async () => (await import('./commands/sandboxes.js')).logsCommand,
    summary: "a sandbox's network decisions (--blocked, --follow)",
  },
  rm: {
    run: async () => (await import('./commands/sandboxes.js')).rmCommand,
    summary: 'destroy sandboxes',
  },
  approvals: {
    run: async () => (await import('./commands/approvals.js')).approvalsCommand,
    summary: 'requests held for an approval (--follow to wait for them)',
  },
  approve: {
    run: async () => (await import('./commands/approvals.js')).approveCommand,
    summary: 'answer a held request: --once, or --sandbox [--ttl 10m] for a live rule',
  },
  deny: {
    run: async () => (await import('./commands/approvals.js')).denyCommand,
    summary: 'refuse a held request',
  },
  proxy: {
    run: async () => (await import('./commands/proxy.js')).proxyCommand,
    summary: 'run the egress proxy (standalone, or as a sandbox sidecar)',
  },
}

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length))
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  return [
    'usage: isorun <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    'Run "isorun <command> --help" for its options.',
  ].join('\n')
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`)
    return name === undefined ? 2 : 0
  }
  if (name === '--version') {
    const { createRequire } = await import('node:module')
    const pkg = createRequire(import.meta.url)('../../../package.json') as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return 0
  }
  const command = COMMANDS[name]
  if (!command) throw new UsageError(`unknown command "${name}"`, help())
  return (await command.run())(rest)
}

runProgram(main(process.argv.slice(2)))
