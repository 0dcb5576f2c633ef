// How an isorun program ends: with its command's exit code, or with one
// readable line for an error (usage errors exit 2, command errors with their
// own code, anything else 1 with the stack behind ISORUN_DEBUG).

import { CliError, UsageError } from './errors.js'

export function runProgram(run: Promise<number>): void {
  run.then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      if (err instanceof UsageError) {
        process.stderr.write(`isorun: ${err.message}\n${err.hint ? `${err.hint}\n` : ''}`)
        process.exitCode = 2
      } else if (err instanceof CliError) {
        process.stderr.write(`isorun: ${err.message}\n`)
        process.exitCode = err.exitCode
      } else {
        const detail = process.env.ISORUN_DEBUG
          ? (err as Error).stack
          : ((err as Error)?.message ?? String(err))
        process.stderr.write(
          `isorun: unexpected error: ${detail}\n(set ISORUN_DEBUG=1 for a stack trace)\n`,
        )
        process.exitCode = 1
      }
    },
  )
}
