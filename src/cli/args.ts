// Argument parsing helpers around node:util parseArgs.

import { parseArgs } from 'node:util'
import { UsageError } from './errors.js'

export { parseArgs }

/** Runs a parseArgs call and turns its errors into a UsageError carrying the command's usage line. */
export function withUsage<T>(usage: string, parse: () => T): T {
  try {
    return parse()
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify .*$/s, ''), usage)
  }
}

/** Repeatable flags that also take comma-separated lists: `--allow a,b --allow c`. */
export function splitList(values: readonly string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '')
}

export const PROFILES_DIR_OPTION = { 'profiles-dir': { type: 'string', multiple: true } } as const
