// The synchronous fuzz targets over their seed corpora (real client captures and
// the inputs of past findings): each property holds for each seed. This keeps the
// targets working as the code they fuzz changes, without the fuzzer itself
// (npm run fuzz runs that; the socket targets run there too).

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import * as addressSpellings from '../../fuzz/targets/address-spellings.js'
import * as clientHello from '../../fuzz/targets/client-hello.js'
import * as connectHead from '../../fuzz/targets/connect-head.js'
import * as host from '../../fuzz/targets/host.js'
import * as httpHead from '../../fuzz/targets/http-head.js'
import * as profile from '../../fuzz/targets/profile.js'
import * as rule from '../../fuzz/targets/rule.js'

const TARGETS: Record<string, (data: Buffer) => void> = {
  'client-hello': clientHello.fuzz,
  'connect-head': connectHead.fuzz,
  'http-head': httpHead.fuzz,
  host: host.fuzz,
  'address-spellings': addressSpellings.fuzz,
  rule: rule.fuzz,
  profile: profile.fuzz,
}

const corpus = (target: string): string =>
  join(import.meta.dirname, '..', '..', 'fuzz', 'corpus', target)

describe.each(Object.entries(TARGETS))('fuzz target %s', (target, fuzz) => {
  const seeds = readdirSync(corpus(target))
  it('has seeds', () => expect(seeds.length).toBeGreaterThan(0))
  it.each(seeds)('holds its properties on %s', (seed) => {
    expect(() => fuzz(readFileSync(join(corpus(target), seed)))).not.toThrow()
  })
})
