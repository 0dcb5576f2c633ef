// Bundles the sidecar's program (src/cli/proxy-main.ts) with esbuild into one
// file, dist/isorun-proxy.mjs, which the runner starts in every proxy
// container. One file instead of some 150 modules: Node's module loader reads,
// resolves and compiles less at start, and the idle sidecar is smaller
// (`npm run bench:size` measures it against the tsc output).
//
//   node scripts/bundle-proxy.mjs          (part of npm run build)
//
// bundleProxy() is also what bench:size uses to build the variants it compares.

import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const ENTRY = `${ROOT}src/cli/proxy-main.ts`
export const OUTFILE = `${ROOT}dist/isorun-proxy.mjs`

/**
 * @param {{ outfile?: string, minify?: boolean }} options
 */
export async function bundleProxy(options = {}) {
  const { outfile = OUTFILE, minify = true } = options
  await build({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // One file: code splitting (lazily imported modules as chunks) would save about 1 MiB of
    // private memory, but breaks the lazy import of undici (a CommonJS package) in the data path.
    outfile,
    minify,
    // Error classes and stack traces keep their names.
    keepNames: true,
    // The CommonJS packages inside (pino, dns-packet, …) require Node's built-in modules,
    // and the policy loads tldts and minimatch with createRequire when it first needs them:
    // an ES module has no `require` of its own.
    banner: {
      js: "import { createRequire as __isorunRequire } from 'node:module'; const require = __isorunRequire(import.meta.url);",
    },
    legalComments: 'none',
    logLevel: 'warning',
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundleProxy()
