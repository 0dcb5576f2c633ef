import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// Unit and integration tests: real sockets on loopback, no Docker. The
// end-to-end tests have their own config (vitest.e2e.config.ts).
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
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
})
