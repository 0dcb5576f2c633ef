// Just enough WebSocket (RFC 6455) for a handshake-and-splice check: the
// accept key, and single unfragmented text frames with payloads under 126 bytes.

import { createHash, randomBytes } from 'node:crypto'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64')
}

export function newKey(): string {
  return randomBytes(16).toString('base64')
}

/** A text frame; clients must mask (RFC 6455 §5.3), servers must not. */
export function encodeText(text: string, masked: boolean): Buffer {
  const payload = Buffer.from(text)
  if (payload.length > 125) throw new Error('test frames are short')
  if (!masked) return Buffer.concat([Buffer.from([0x81, payload.length]), payload])
  const mask = randomBytes(4)
  const body = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)))
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, body])
}

/** Decodes the first frame in `data`; undefined while it is incomplete. */
export function decodeFrame(
  data: Buffer,
): { opcode: number; text: string; length: number } | undefined {
  if (data.length < 2) return undefined
  const opcode = (data[0] as number) & 0x0f
  const masked = ((data[1] as number) & 0x80) !== 0
  const len = (data[1] as number) & 0x7f
  if (len > 125) throw new Error('test frames are short')
  const start = 2 + (masked ? 4 : 0)
  if (data.length < start + len) return undefined
  const mask = masked ? data.subarray(2, 6) : undefined
  const payload = Buffer.from(data.subarray(start, start + len))
  if (mask)
    for (let i = 0; i < payload.length; i++)
      payload[i] = (payload[i] as number) ^ (mask[i % 4] as number)
  return { opcode, text: payload.toString(), length: start + len }
}
