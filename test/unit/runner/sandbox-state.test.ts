// The runner's kept per-sandbox state on a real directory: what ids() lists is
// what recovery compares with the engine, so it must list exactly the kept
// sandboxes, nothing else in the directory, and nothing once removed.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SandboxStateStore, type SandboxState } from '../../../src/runner/sandbox-state.js'
import { createCertificateAuthority } from '../../../src/tls/ca.js'

let dir: string
let state: SandboxState

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'isorun-sandbox-state-'))
  state = {
    ca: await createCertificateAuthority({ commonName: 'isorun sandbox test' }),
    secrets: [{ name: 'anthropic', placeholder: 'isorun-secret-anthropic-00' }],
  }
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('SandboxStateStore', () => {
  it('lists no ids before anything is kept, even without its directory', () => {
    expect(new SandboxStateStore(join(dir, 'never-made')).ids()).toEqual([])
  })

  it('lists the kept sandboxes only, and forgets a removed one', () => {
    const root = join(dir, 'sandboxes')
    const store = new SandboxStateStore(root)
    store.save('0a1b2c3d4e5f', state)
    store.save('ffeeddccbbaa', state)
    // Not sandbox ids: left alone and never listed (so never removed by recovery).
    mkdirSync(join(root, 'lost+found'))
    writeFileSync(join(root, 'README'), 'not a sandbox\n')

    expect(store.ids().sort()).toEqual(['0a1b2c3d4e5f', 'ffeeddccbbaa'])
    expect(store.load('0a1b2c3d4e5f')).toEqual(state)

    store.remove('0a1b2c3d4e5f')
    expect(store.ids()).toEqual(['ffeeddccbbaa'])
    expect(store.load('0a1b2c3d4e5f')).toBeUndefined()
  })
})
