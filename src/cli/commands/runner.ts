// `isorun runner`: the runner API (settings from ISORUN_* environment variables).

import { ConfigError, loadRunnerConfig } from '../../runner/config.js'
import { startRunner } from '../../runner/runner.js'
import { CliError, UsageError } from '../errors.js'

const USAGE =
  'usage: isorun runner   (configured with ISORUN_* environment variables; see docs/runner-api.md)'

export async function runnerCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (argv.length > 0) throw new UsageError(`unexpected argument "${argv[0]}"`, USAGE)
  let config
  try {
    config = loadRunnerConfig()
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message)
    throw err
  }
  let runner
  try {
    runner = await startRunner(config)
  } catch (err) {
    throw new CliError((err as Error).message)
  }
  if (config.apiKeySource === 'generated' || config.apiKeySource === 'file') {
    process.stderr.write(
      `isorun runner: API key in ${config.apiKeyFile} (set ISORUN_API_KEY to choose one)\n`,
    )
  } else if (config.apiKeySource === 'disabled') {
    process.stderr.write(
      'isorun runner: WARNING: authentication is disabled (ISORUN_AUTH=none); anyone who reaches the API can start containers\n',
    )
  }
  process.stderr.write(
    `isorun runner: listening on http://${runner.address.address}:${runner.address.port}\n`,
  )
  return new Promise<number>((resolve) => {
    const stop = (): void => void runner.close().then(() => resolve(0))
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}
