import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// End-to-end tests against a real Docker engine: one stack for the whole run
// (global set-up), files one after another (they share the engine).
export default defineConfig({
  // Tests use the SDK's sources, so an edit needs no rebuild (the CLI, run as a
  // program, uses the built package).
  resolve: {
    alias: [
      {
        find: /^isorun$/,
        replacement: fileURLToPath(new URL('./sdk/typescript/src/index.ts', import.meta.url)),
      },
    ],
  },
  test: {
    include: ['test/e2e/**/*.test.ts'],
    globalSetup: ['test/e2e/setup/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 15 * 60_000,
    pool: 'forks',
  },
})
