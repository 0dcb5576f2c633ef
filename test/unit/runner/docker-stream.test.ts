import { describe, expect, it } from 'vitest'
import { demultiplex, type OutputFrame } from '../../../src/runner/docker-stream.js'

function frame(type: number, payload: string): Buffer {
  const header = Buffer.alloc(8)
  header[0] = type
  header.writeUInt32BE(Buffer.byteLength(payload), 4)
  return Buffer.concat([header, Buffer.from(payload)])
}

async function collect(chunks: Buffer[]): Promise<[string, string][]> {
  const out: [string, string][] = []
  async function* source(): AsyncGenerator<Buffer> {
    yield* chunks
  }
  for await (const f of demultiplex(source()) as AsyncGenerator<OutputFrame>)
    out.push([f.stream, f.data.toString()])
  return out
}

describe('demultiplex (Docker attach stream)', () => {
  const stream = Buffer.concat([
    frame(1, 'out one\n'),
    frame(2, 'err one\n'),
    frame(1, ''),
    frame(3, 'engine error\n'),
    frame(1, 'x'.repeat(70_000)),
  ])
  const expected = [
    ['stdout', 'out one\n'],
    ['stderr', 'err one\n'],
    ['stderr', 'engine error\n'],
    ['stdout', 'x'.repeat(70_000)],
  ]

  it('splits frames that arrive together', async () => {
    expect(await collect([stream])).toEqual(expected)
  })

  it('joins frames and headers split at every possible point', async () => {
    for (let cut = 1; cut < 40; cut++) {
      expect(await collect([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(expected)
    }
    const bytes = [...stream].map((b) => Buffer.from([b]))
    expect(await collect(bytes.slice(0, 200).concat([stream.subarray(200)]))).toEqual(expected)
  })

  it('drops an incomplete last frame and unknown stream types', async () => {
    expect(
      await collect([frame(0, 'stdin echo'), frame(1, 'whole'), frame(1, 'cut').subarray(0, 9)]),
    ).toEqual([['stdout', 'whole']])
  })
})
