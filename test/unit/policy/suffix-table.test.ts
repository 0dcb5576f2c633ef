import { describe, expect, it } from 'vitest'
import { SuffixTable } from '../../../src/policy/suffix-table.js'

describe('SuffixTable', () => {
  const table = new SuffixTable<string>()
  table.add('example.com', 'e1')
  table.add('example.com', 'e2')
  table.add('b.example.com', 'b')
  table.add('co.uk', 'uk')
  const all = (values: readonly string[]) => values.join('+')

  it.each([
    ['a.example.com', 'e1+e2'],
    ['x.y.z.example.com', 'e1+e2'],
    ['a.b.example.com', 'b'], // the longest suffix wins
    ['b.example.com', 'e1+e2'], // a suffix never matches itself (the apex)
    ['example.com', undefined],
    ['xexample.com', undefined], // only at a label boundary
    ['example.com.evil.net', undefined],
    ['a.co.uk', 'uk'],
    ['', undefined],
    ['.', undefined],
  ])('%s -> %s', (name, expected) => {
    expect(table.longestMatch(name, all)).toBe(expected)
  })

  it('lets the caller skip a suffix (e.g. no rule for this port) and fall back to a shorter one', () => {
    expect(
      table.longestMatch('a.b.example.com', (values) =>
        values.includes('b') ? undefined : all(values),
      ),
    ).toBe('e1+e2')
  })

  it('keeps apart suffixes whose hashes collide', () => {
    // Read backwards, "aA" and "BB" hash alike (65*31+97 = 66*31+66).
    const t = new SuffixTable<string>()
    t.add('aA.test', 'first')
    t.add('BB.test', 'second')
    expect(t.longestMatch('x.aA.test', (v) => v[0])).toBe('first')
    expect(t.longestMatch('x.BB.test', (v) => v[0])).toBe('second')
    expect(t.get('BB.test')).toEqual(['second'])
    expect(t.size).toBe(2)
  })
})
