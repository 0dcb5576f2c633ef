// The SDK client for CLI commands that talk to the runner: --url and --api-key
// flags over ISORUN_URL / ISORUN_API_KEY, and SDK errors as one-line messages.

import { readFileSync } from 'node:fs'
import { generatedKeyFile } from '../runner/config.js'
import { Isorun, IsorunError, type NetworkEvent } from 'isorun'
import { CliError } from './errors.js'

export const CLIENT_OPTIONS = {
  url: { type: 'string' },
  'api-key': { type: 'string' },
} as const

/**
 * The API key: --api-key, ISORUN_API_KEY, or the key a runner on this machine
 * generated (so `docker compose exec runner isorun ls` needs no setup).
 */
function apiKeyFrom(flag: string | undefined): string | undefined {
  if (flag) return flag
  if (process.env.ISORUN_API_KEY) return process.env.ISORUN_API_KEY
  try {
    const key = readFileSync(generatedKeyFile(), 'utf8').trim()
    return key === '' ? undefined : key
  } catch {
    return undefined
  }
}

export function clientFrom(values: {
  url?: string | undefined
  'api-key'?: string | undefined
}): Isorun {
  const apiKey = apiKeyFrom(values['api-key'])
  return new Isorun({
    ...(values.url ? { url: values.url } : {}),
    ...(apiKey ? { apiKey } : {}),
  })
}

/** Runs an SDK call; its errors become CLI errors (exit 1, or 2 for a usage problem the runner reported). */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof IsorunError) {
      const usage = err.status === 400 || err.status === 404 || err.name === 'IsorunUsageError'
      throw new CliError(`${err.message}${err.code ? ` [${err.code}]` : ''}`, usage ? 2 : 1)
    }
    throw err
  }
}

/** One line per decision, for people. */
export function formatEvent(e: NetworkEvent): string {
  const target = `${e.host}${e.port ? `:${e.port}` : ''}`
  const what = [e.method, e.path].filter(Boolean).join(' ') || e.qtype || e.sni || ''
  const time = e.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
  // Report mode: allowed, but the rules would refuse it; marked so it stands out among refusals.
  const outcome = e.action === 'deny' ? 'BLOCKED' : e.wouldDeny ? 'WOULD-DENY' : 'allowed'
  const why =
    e.action === 'deny'
      ? `${e.reason}${e.detail ? ` (${e.detail})` : ''}`
      : e.wouldDeny
        ? `${e.wouldDeny.reason}${e.wouldDeny.rule ? ` ${e.wouldDeny.rule}` : ''}${e.wouldDeny.detail ? ` (${e.wouldDeny.detail})` : ''} (report mode: allowed)`
        : (e.rule ?? e.reason)
  const approval = e.approval ? `  [${e.approval.answer} by ${e.approval.by}]` : ''
  const budget = e.budget
    ? `  [budget ${e.budget.pattern}: up ${e.budget.up}, down ${e.budget.down}, ${e.budget.requests} requests]`
    : ''
  return `${time}  ${outcome.padEnd(10)}  ${e.protocol.padEnd(7)}  ${target}${what ? `  ${what}` : ''}  ${why}${approval}${budget}${e.error ? `  error: ${e.error}` : ''}`
}
