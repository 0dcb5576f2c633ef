// A standalone proxy on --profile follows its profile's file: the catalogue on
// a real directory, watched, and followProfile() replacing the policy in force.

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { compilePolicy, decide } from '../../../src/policy/index.js'
import {
  policySpecOf,
  ProfileCatalogue,
  type CatalogueChange,
} from '../../../src/profiles/index.js'
import { PolicyHolder } from '../../../src/proxy/context.js'
import type { OperationalLog } from '../../../src/proxy/decision-log.js'
import { followProfile } from '../../../src/proxy/policy-source.js'

let dir: string
let catalogue: ProfileCatalogue
let holder: PolicyHolder
const logged: { level: string; fields: Record<string, unknown>; msg: string }[] = []
const log: OperationalLog = {
  info: (fields, msg) => logged.push({ level: 'info', fields, msg }),
  warn: (fields, msg) => logged.push({ level: 'warn', fields, msg }),
  error: (fields, msg) => logged.push({ level: 'error', fields, msg }),
}

function nextChange(): Promise<CatalogueChange> {
  return new Promise((resolve) => catalogue.once('change', resolve))
}

function allows(host: string): boolean {
  return decide({ protocol: 'connect', host, port: 443 }, holder.current).action === 'allow'
}

beforeEach(async () => {
  logged.length = 0
  dir = await mkdtemp(join(tmpdir(), 'isorun-follow-'))
  await writeFile(join(dir, 'live.yaml'), 'name: live\nallow: [a.example.com]\n')
  await writeFile(join(dir, 'other.yaml'), 'name: other\nallow: [o.example.com]\n')
  catalogue = new ProfileCatalogue({ dirs: [dir] })
  holder = new PolicyHolder(compilePolicy(policySpecOf(catalogue.get('live')!), {}))
  await followProfile({ catalogue, name: 'live', operator: {}, policy: holder, log })
  catalogue.watch({ debounceMs: 50, pollMs: 200 })
})

afterEach(async () => {
  catalogue.close()
  await rm(dir, { recursive: true, force: true })
})

describe('followProfile', () => {
  it('an edit to the profile applies to the next decision', async () => {
    expect(allows('a.example.com')).toBe(true)
    const change = nextChange()
    await writeFile(join(dir, 'live.yaml'), 'name: live\nallow: [b.example.com]\n')
    expect((await change).changed).toContain('live')
    expect(allows('b.example.com')).toBe(true)
    expect(allows('a.example.com')).toBe(false)
    expect(logged).toEqual([
      {
        level: 'info',
        fields: { policy: 'live' },
        msg: 'profile changed; new connections use the new rules',
      },
    ])
  })

  it('an edit to another profile leaves the policy as it is', async () => {
    const before = holder.current
    const change = nextChange()
    await writeFile(join(dir, 'other.yaml'), 'name: other\nallow: [p.example.com]\n')
    expect((await change).changed).toEqual(['other'])
    expect(holder.current).toBe(before)
    expect(logged).toEqual([])
  })

  it('a change to a profile it includes applies too', async () => {
    let change = nextChange()
    await writeFile(join(dir, 'live.yaml'), 'name: live\ninclude: [other]\n')
    await change
    expect(allows('o.example.com')).toBe(true)
    change = nextChange()
    await writeFile(join(dir, 'other.yaml'), 'name: other\nallow: [q.example.com]\n')
    expect((await change).changed).toEqual(expect.arrayContaining(['other', 'live']))
    expect(allows('q.example.com')).toBe(true)
    expect(allows('o.example.com')).toBe(false)
  })
})
