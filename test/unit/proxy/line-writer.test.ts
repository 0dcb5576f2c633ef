// The stdout writer of the decision log, on a file: lines arrive whole, in
// order, soon (not only when a buffer fills), and what is pending at exit is
// written synchronously.

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FdLineWriter } from '../../../src/proxy/line-writer.js'

let dir: string
let file: string
let fd: number

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'isorun-line-writer-'))
  file = join(dir, 'out.log')
  fd = openSync(file, 'w')
})

afterEach(() => {
  closeSync(fd)
  rmSync(dir, { recursive: true, force: true })
})

const text = (): string => readFileSync(file, 'utf8')

/** Waits until the file holds `want`; the time limit is only a safety net for a writer that never writes. */
async function until(want: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (text() !== want && Date.now() < deadline) await sleep(2)
}

describe('FdLineWriter', () => {
  it('a single line appears by itself, not only when a buffer fills', async () => {
    const writer = new FdLineWriter(fd)
    writer.write('{"a":1}\n')
    await until('{"a":1}\n')
    expect(text()).toBe('{"a":1}\n')
    writer.close()
  })

  it('many lines, written in bursts, arrive whole and in order', async () => {
    const writer = new FdLineWriter(fd)
    const expected: string[] = []
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 50; i++) {
        const line = `{"n":${burst * 50 + i},"pad":"${'x'.repeat(i * 7)}"}\n`
        expected.push(line)
        writer.write(line)
      }
      await sleep(1)
    }
    const want = expected.join('')
    await until(want)
    expect(text()).toBe(want)
    writer.close()
  })

  it('lines that follow a write closely still appear, with no write after them', async () => {
    const writer = new FdLineWriter(fd)
    writer.write('1\n')
    await sleep(1)
    writer.write('2\n')
    await until('1\n2\n')
    expect(text()).toBe('1\n2\n')
    writer.close()
  })

  it('flushSync writes what is pending at once', () => {
    const writer = new FdLineWriter(fd)
    writer.write('a\n')
    writer.write('b\n')
    writer.flushSync()
    expect(text()).toBe('a\nb\n')
    writer.close()
  })
})
