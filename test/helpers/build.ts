// Tests that run what `npm run build` made (the CLI in dist/src, the sidecar's bundle
// dist/isorun-proxy.mjs) fail early, and say why, when it is missing or older than
// the sources it is built from: a stale build would test yesterday's code.

import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'

export const ROOT = resolve(import.meta.dirname, '../..')

/** The source folders the proxy's programs are built from. */
const PROXY_SOURCES = [
  'src/proxy',
  'src/policy',
  'src/profiles',
  'src/cli',
  'src/tls',
  'src/secrets',
  'src/lib',
]

/**
 * Throws when `builtFrom(source)` (a path relative to the repository) is missing or
 * older than `source`, for every TypeScript file of the proxy's sources.
 */
export function checkBuilt(builtFrom: (source: string) => string): void {
  for (const dir of PROXY_SOURCES) {
    for (const file of readdirSync(join(ROOT, dir), { recursive: true }) as string[]) {
      if (!file.endsWith('.ts')) continue
      const source = join(dir, file)
      const built = join(ROOT, builtFrom(source))
      if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`)
      if (statSync(built).mtimeMs < statSync(join(ROOT, source)).mtimeMs)
        throw new Error(`${built} is older than ${source}: run \`npm run build\` first`)
    }
  }
}

/** dist/src/…/x.js for src/…/x.ts: what tsc makes of each source file. */
export const tscOutput = (source: string): string => join('dist', source.replace(/\.ts$/, '.js'))
