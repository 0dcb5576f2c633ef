import { describe, expect, it } from 'vitest'
import { sandboxPath } from '../../../src/runner/files.js'

describe('sandboxPath', () => {
  it('accepts absolute paths, dropping repeated and trailing slashes', () => {
    expect(sandboxPath('/')).toBe('/')
    expect(sandboxPath('/tmp/a.txt')).toBe('/tmp/a.txt')
    expect(sandboxPath('//tmp//dir/')).toBe('/tmp/dir')
    expect(sandboxPath('/tmp/..hidden/.x')).toBe('/tmp/..hidden/.x')
    expect(sandboxPath('/tmp/spaces and ünïcode')).toBe('/tmp/spaces and ünïcode')
  })

  it('refuses what could be read two ways, with the reason', () => {
    for (const [path, reason] of [
      [null, /give the path/],
      ['', /give the path/],
      ['tmp/a', /must be absolute/],
      ['/tmp/../etc/passwd', /\. or \.\. segments/],
      ['/tmp/./a', /\. or \.\. segments/],
      ['/..', /\. or \.\. segments/],
      ['/tmp/a\0b', /NUL/],
      [`/${'a'.repeat(5000)}`, /4096/],
    ] as const) {
      expect(() => sandboxPath(path)).toThrow(reason)
      try {
        sandboxPath(path)
      } catch (err) {
        expect(err).toMatchObject({ status: 400, code: 'invalid-path' })
      }
    }
  })
})
