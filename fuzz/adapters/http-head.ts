// The one place the fuzz targets touch the HTTP head sniffer's API
// (src/proxy/sniff/http-head.ts). That module is being reworked; when its
// exports change, re-point these two functions and the target keeps working.

import { classifyFirstBytes, parseHttpHead } from '../../src/proxy/sniff/http-head.js'

/** What the head reader made of everything received so far. */
export type HeadReading =
  | { readonly status: 'incomplete' }
  | { readonly status: 'invalid'; readonly error: string }
  | {
      readonly status: 'ok'
      readonly method: string
      readonly target: string
      readonly version: string
      /** The Host value as sent, or null when empty. */
      readonly host: string | null
      /** Bytes of the request line and headers, final CRLF CRLF included. */
      readonly headerBytes: number
    }

export function readHttpHead(data: Buffer): HeadReading {
  return parseHttpHead(data)
}

/** Which sniffer the first bytes call for: `tls`, `http`, `other`, or `incomplete`. */
export function classifyTunnelStart(data: Buffer): { readonly status: string } {
  return { status: classifyFirstBytes(data) }
}
