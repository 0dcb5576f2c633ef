// The runner's settings for its proxies' DNS cache: ISORUN_PROXY_DNS_TTL_MIN
// and _MAX, checked at start with a message that names the variable.

import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadRunnerConfig } from '../../../src/runner/config.js'

const base = (): NodeJS.ProcessEnv => ({
  ISORUN_AUTH: 'none',
  ISORUN_STATE_DIR: mkdtempSync(join(tmpdir(), 'isorun-config-')),
})

describe('ISORUN_PROXY_DNS_TTL_MIN and _MAX', () => {
  it('default to 5 and 300 seconds', () => {
    expect(loadRunnerConfig(base()).proxyDnsTtl).toEqual({ minSeconds: 5, maxSeconds: 300 })
  })

  it('are taken as given', () => {
    const env = { ...base(), ISORUN_PROXY_DNS_TTL_MIN: '0', ISORUN_PROXY_DNS_TTL_MAX: '3600' }
    expect(loadRunnerConfig(env).proxyDnsTtl).toEqual({ minSeconds: 0, maxSeconds: 3600 })
  })

  it.each([
    [{ ISORUN_PROXY_DNS_TTL_MIN: 'soon' }, /ISORUN_PROXY_DNS_TTL_MIN="soon" must be a number/],
    [{ ISORUN_PROXY_DNS_TTL_MAX: '-1' }, /ISORUN_PROXY_DNS_TTL_MAX="-1" must be a number/],
    [
      { ISORUN_PROXY_DNS_TTL_MIN: '60', ISORUN_PROXY_DNS_TTL_MAX: '10' },
      /ISORUN_PROXY_DNS_TTL_MIN must not be above ISORUN_PROXY_DNS_TTL_MAX/,
    ],
  ])('refuse %j', (vars, message) => {
    expect(() => loadRunnerConfig({ ...base(), ...vars })).toThrow(ConfigError)
    expect(() => loadRunnerConfig({ ...base(), ...vars })).toThrow(message)
  })
})
