// The sidecar's program: `isorun proxy` alone, what esbuild bundles into
// dist/isorun-proxy.mjs (scripts/bundle-proxy.mjs) and the runner starts in
// each proxy container. It takes the same arguments as the full CLI
// (`proxy` first), so either can run a sidecar; it loads nothing of the other
// commands (runner, Docker client, SDK).

import { UsageError } from './errors.js'
import { runProgram } from './program.js'
import { proxyCommand } from './commands/proxy.js'

async function main([command, ...rest]: string[]): Promise<number> {
  if (command !== 'proxy')
    throw new UsageError(
      `this program runs only "isorun proxy" (got "${command ?? ''}")`,
      'usage: isorun-proxy proxy [options]; the isorun command has the others',
    )
  return proxyCommand(rest)
}

runProgram(main(process.argv.slice(2)))
