// The CONNECT head the HTTP proxy port reads itself: a strict request line and
// header lines (CRLF-separated, the final blank line already cut off).

import { describe, expect, it } from 'vitest'
import { parseConnectHead } from '../../../src/proxy/http-listener.js'

describe('parseConnectHead', () => {
  it.each([
    ['CONNECT example.com:443 HTTP/1.1', 'example.com:443'],
    ['CONNECT example.com:443 HTTP/1.0', 'example.com:443'],
    ['CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443', '[2001:db8::1]:443'],
    [
      'CONNECT a.test:22 HTTP/1.1\r\nHost: a.test:22\r\nUser-Agent: curl/8.0\r\nProxy-Connection: Keep-Alive\r\nX-Empty:\r\nX-Tab:\ta\tb\r\nX-Obs-Text: caf\u00e9',
      'a.test:22',
    ],
  ])('%j names %s', (head, authority) => {
    expect(parseConnectHead(head)).toEqual({ authority })
  })

  it.each([
    ['another method', 'GET example.com:443 HTTP/1.1'],
    ['lowercase method', 'connect example.com:443 HTTP/1.1'],
    ['two spaces', 'CONNECT  example.com:443 HTTP/1.1'],
    ['no version', 'CONNECT example.com:443'],
    ['HTTP/2', 'CONNECT example.com:443 HTTP/2.0'],
    ['HTTP/1.2', 'CONNECT example.com:443 HTTP/1.2'],
    ['trailing space', 'CONNECT example.com:443 HTTP/1.1 '],
    ['a bare LF in a header line', 'CONNECT a:1 HTTP/1.1\r\nHost: a\nX: b'],
    ['a bare CR in a header line', 'CONNECT a:1 HTTP/1.1\r\nHost: a\rX: b'],
    ['a bare LF ending the request line', 'CONNECT a:1 HTTP/1.1\nHost: a'],
    ['a folded header', 'CONNECT a:1 HTTP/1.1\r\nX: a\r\n  b'],
    ['a space before the colon', 'CONNECT a:1 HTTP/1.1\r\nHost : a'],
    ['no colon', 'CONNECT a:1 HTTP/1.1\r\nHost a'],
    ['an empty name', 'CONNECT a:1 HTTP/1.1\r\n: a'],
    ['a NUL in a value', 'CONNECT a:1 HTTP/1.1\r\nX: a\u0000b'],
    ['a DEL in a value', 'CONNECT a:1 HTTP/1.1\r\nX: a\u007fb'],
    ['an empty line inside', 'CONNECT a:1 HTTP/1.1\r\n\r\nX: a'],
    // Found by the connect-head fuzz target: the request line took any byte but a space.
    ['a bare LF in the authority', 'CONNECT a\nb:1 HTTP/1.1'],
    ['a bare CR in the authority', 'CONNECT a\rb:1 HTTP/1.1'],
    ['a tab in the authority', 'CONNECT a\tb:1 HTTP/1.1'],
    ['a NUL in the authority', 'CONNECT a\u0000b:1 HTTP/1.1'],
    ['an 8-bit byte in the authority', 'CONNECT \u00c0[2001:db8::1]:8443 HTTP/1.1'],
  ])('%s is malformed', (_name, head) => {
    expect(parseConnectHead(head)).toHaveProperty('error')
  })
})
