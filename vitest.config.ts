import { defineConfig } from 'vitest/config'

// Unit and integration tests: real sockets on loopback, no Docker. The
// end-to-end tests have their own config (vitest.e2e.config.ts).
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
})
