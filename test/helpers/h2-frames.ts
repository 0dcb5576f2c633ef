// Hand-made HTTP/2 frames, for the tests that write what no well-behaved
// client would (intercept-bypass, attack2-h2-streams), and a reader of the
// frames the proxy sends back.

/** The client connection preface. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

export const FRAME = { HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4, GOAWAY: 0x7 } as const

/** An HPACK literal header field without indexing, no Huffman coding (RFC 7541 §6.2.2); short names and values only. */
export function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name)
  const v = Buffer.from(value)
  if (n.length > 126 || v.length > 126) throw new Error('test headers are short')
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v])
}

export function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

export interface Frame {
  readonly type: number
  readonly flags: number
  readonly stream: number
  readonly payload: Buffer
}

/** Splits a byte stream into frames as they arrive; the rest waits for more bytes. */
export class FrameReader {
  readonly frames: Frame[] = []
  private pending = Buffer.alloc(0)

  push(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk])
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3)
      if (this.pending.length < 9 + length) return
      this.frames.push({
        type: this.pending[3] as number,
        flags: this.pending[4] as number,
        stream: this.pending.readUInt32BE(5) & 0x7fffffff,
        payload: this.pending.subarray(9, 9 + length),
      })
      this.pending = this.pending.subarray(9 + length)
    }
  }

  /** The settings of a SETTINGS frame, by identifier. */
  static settings(f: Frame): Map<number, number> {
    const out = new Map<number, number>()
    for (let i = 0; i + 6 <= f.payload.length; i += 6)
      out.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2))
    return out
  }
}
