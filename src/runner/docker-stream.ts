// Docker's multiplexed attach stream (exec without a TTY): each frame is an
// 8-byte header (stream type, three zero bytes, payload size as uint32 big
// endian) followed by the payload. Demultiplexed by pulling from the source,
// so a slow consumer slows the command down instead of filling memory.

export interface OutputFrame {
  readonly stream: 'stdout' | 'stderr'
  readonly data: Buffer
}

const HEADER = 8

/** Frames of a Docker attach stream, in order. Docker's own error frames (type 3) read as stderr. */
export async function* demultiplex(source: AsyncIterable<Buffer>): AsyncGenerator<OutputFrame> {
  let pending: Buffer[] = []
  let pendingSize = 0
  for await (const chunk of source) {
    pending.push(chunk)
    pendingSize += chunk.length
    for (;;) {
      if (pendingSize < HEADER) break
      let buffer = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending)
      const size = buffer.readUInt32BE(4)
      if (buffer.length < HEADER + size) {
        pending = [buffer]
        break
      }
      const type = buffer[0]
      const data = buffer.subarray(HEADER, HEADER + size)
      buffer = buffer.subarray(HEADER + size)
      pending = buffer.length > 0 ? [buffer] : []
      pendingSize = buffer.length
      if (data.length === 0) continue
      if (type === 1) yield { stream: 'stdout', data }
      else if (type === 2 || type === 3) yield { stream: 'stderr', data }
    }
  }
}
