// Bundles a TypeScript fixture and the packages it imports (@grpc/grpc-js)
// into one CommonJS file for a container that has node but no node_modules:
// the stand-in's streaming services, the sandbox's streaming clients.

import { build } from 'esbuild'

export async function bundleFixture(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile,
    // grpc-js loads it only for channelz and ORCA, which these fixtures do not use.
    external: ['@grpc/proto-loader'],
    logLevel: 'warning',
  })
}
