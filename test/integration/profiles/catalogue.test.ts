// The catalogue on real directories: operator overrides, live reloads, and a
// broken file that keeps its last good version.
import { mkdtemp, rm, writeFile, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ProfileCatalogue, type CatalogueChange } from '../../../src/profiles/index.js'

let dir: string
let catalogue: ProfileCatalogue | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'isorun-catalogue-'))
})
afterEach(async () => {
  catalogue?.close()
  catalogue = undefined
  await rm(dir, { recursive: true, force: true })
})

function nextChange(c: ProfileCatalogue): Promise<CatalogueChange> {
  return new Promise((resolve) => c.once('change', resolve))
}

describe('ProfileCatalogue', () => {
  it('loads the built-ins plus an operator directory, whose profile of the same name wins everywhere', async () => {
    await writeFile(
      join(dir, 'pypi.yaml'),
      'name: pypi\ndescription: our mirror\nallow: [pypi.internal.example]\n',
    )
    await writeFile(
      join(dir, 'mine.yaml'),
      'name: mine\ndescription: mine\ninclude: [pypi]\nallow: [api.example.com]\n',
    )
    catalogue = new ProfileCatalogue({ dirs: [dir] })
    expect(catalogue.problems()).toEqual([])
    expect(catalogue.get('pypi')?.allow).toEqual([{ rule: 'pypi.internal.example', from: 'pypi' }])
    // claude-code (built-in) includes pypi: it sees the override.
    const claude = catalogue.get('claude-code')
    expect(claude?.allow).toContainEqual({ rule: 'pypi.internal.example', from: 'pypi' })
    expect(claude?.allow).not.toContainEqual(
      expect.objectContaining({ rule: 'files.pythonhosted.org' }),
    )
    expect(catalogue.list()).toContainEqual({
      name: 'mine',
      description: 'mine',
      mode: 'allow-list',
    })
  })

  it('applies additions, changes and removals without a restart', async () => {
    catalogue = new ProfileCatalogue({ dirs: [dir] })
    catalogue.watch({ debounceMs: 50, pollMs: 200 })
    let change = nextChange(catalogue)
    await writeFile(
      join(dir, 'live.yaml'),
      'name: live\ndescription: one\nallow: [a.example.com]\n',
    )
    expect((await change).changed).toEqual(['live'])
    expect(catalogue.get('live')?.allow).toEqual([{ rule: 'a.example.com', from: 'live' }])

    change = nextChange(catalogue)
    await writeFile(
      join(dir, 'live.yaml'),
      'name: live\ndescription: two\nallow: [b.example.com]\n',
    )
    expect((await change).changed).toEqual(['live'])
    expect(catalogue.list().find((p) => p.name === 'live')?.description).toBe('two')

    change = nextChange(catalogue)
    await unlink(join(dir, 'live.yaml'))
    expect((await change).removed).toEqual(['live'])
    expect(catalogue.get('live')).toBeUndefined()
  })

  it('keeps the last good version of a file that breaks, and says why', async () => {
    await writeFile(join(dir, 'live.yaml'), 'name: live\nallow: [a.example.com]\n')
    catalogue = new ProfileCatalogue({ dirs: [dir] })
    await writeFile(join(dir, 'live.yaml'), 'name: live\nallow: ["*.com"]\n')
    catalogue.reload()
    expect(catalogue.get('live')?.allow).toEqual([{ rule: 'a.example.com', from: 'live' }])
    const problems = catalogue.problems()
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatchObject({ keptLastGood: true })
    expect(problems[0]?.message).toMatch(/live\.yaml:2:\d+: allow\[0\]: .*public suffix/)
    // Fixed again: the problem goes away.
    await writeFile(join(dir, 'live.yaml'), 'name: live\nallow: [c.example.com]\n')
    catalogue.reload()
    expect(catalogue.problems()).toEqual([])
    expect(catalogue.get('live')?.allow).toEqual([{ rule: 'c.example.com', from: 'live' }])
  })

  it('refuses include cycles and unknown includes, naming the include line, without affecting other profiles', async () => {
    await writeFile(join(dir, 'a.yaml'), 'name: a\ninclude:\n  - b\n')
    await writeFile(join(dir, 'b.yaml'), 'name: b\ninclude:\n  - a\n')
    await writeFile(join(dir, 'c.yaml'), 'name: c\ninclude: [nope]\n')
    catalogue = new ProfileCatalogue({ dirs: [dir] })
    const messages = catalogue.problems().map((p) => p.message)
    // The include that closes the cycle is named, seen from each profile in it.
    expect(messages).toContainEqual(
      expect.stringMatching(/b\.yaml:3:5: include: include cycle a -> b -> a/),
    )
    expect(messages).toContainEqual(
      expect.stringMatching(/a\.yaml:3:5: include: include cycle b -> a -> b/),
    )
    expect(messages).toContainEqual(
      expect.stringMatching(/c\.yaml:2:\d+: include: includes unknown profile "nope"/),
    )
    expect(catalogue.get('a')).toBeUndefined()
    expect(catalogue.get('claude-code')).toBeDefined()
  })

  it('a diamond include is merged once', async () => {
    await writeFile(join(dir, 'd.yaml'), 'name: d\ninclude: [claude-code, openai]\n')
    catalogue = new ProfileCatalogue({ dirs: [dir] })
    const rules = catalogue.get('d')?.allow.map((r) => r.rule) ?? []
    expect(rules.filter((r) => r === 'pypi.org')).toHaveLength(1)
  })
})
