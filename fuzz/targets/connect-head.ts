// Fuzz target: the CONNECT head the HTTP proxy port reads itself, before any
// HTTP server sees the connection (parseConnectHead and parseConnectAuthority
// in src/proxy/http-listener.ts), fed the way the front door feeds it: the
// bytes up to the first blank line, as latin1 text.
//
// Properties: neither throws; the head parser answers exactly an authority or
// an error; an authority is visible ASCII (no CR, LF, NUL, space or other
// control, which a strict reader refuses); a host:port split from it spells the
// authority back, with a port from 1 to 65535.

import { parseConnectAuthority, parseConnectHead } from '../../src/proxy/http-listener.js'
import { property, PropertyViolation, same } from '../lib/property.js'

function readHead(text: string): { authority: string } | { error: string } {
  try {
    return parseConnectHead(text)
  } catch (err) {
    throw new PropertyViolation(`parseConnectHead threw: ${String(err)}`)
  }
}

function checkAuthority(authority: string): void {
  let target: { host: string; port: number } | undefined
  try {
    target = parseConnectAuthority(authority)
  } catch (err) {
    throw new PropertyViolation(`parseConnectAuthority threw: ${String(err)}`)
  }
  if (target === undefined) return
  const { host, port } = target
  property(host.length > 0, 'an empty host', authority)
  property(
    Number.isInteger(port) && port >= 1 && port <= 65535,
    'a port out of range',
    authority,
    port,
  )
  const colon = authority.lastIndexOf(':')
  const hostPart = authority.slice(0, colon)
  same(
    hostPart.startsWith('[') ? `[${host}]` : host,
    hostPart,
    'the host does not spell the authority back',
  )
  same(Number(authority.slice(colon + 1)), port, 'the port does not spell the authority back')
}

export function fuzz(data: Buffer): void {
  const text = data.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  for (const head of end < 0 ? [text] : [text.slice(0, end), text]) {
    const result = readHead(head)
    const keys = Object.keys(result)
    property(
      keys.length === 1 && (keys[0] === 'authority' || keys[0] === 'error'),
      'neither an authority nor an error',
      result,
    )
    if ('error' in result) {
      property(
        typeof result.error === 'string' && result.error.length > 0,
        'an error without a reason',
        result,
      )
      continue
    }
    property(
      /^[\x21-\x7e]+$/.test(result.authority),
      'the authority has bytes a strict reader refuses',
      result.authority,
    )
    checkAuthority(result.authority)
  }
}
