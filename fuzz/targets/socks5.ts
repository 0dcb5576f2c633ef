// Fuzz target: the SOCKS5 handshake reader (src/proxy/socks5.ts) on a real
// loopback connection. The first input byte sets where the client cuts its
// writes (its bit 0 is unused: it once asked for username/password, which the
// server no longer offers); the rest is what the client sends, after which it
// half-closes.
//
// Properties: readSocksRequest resolves with a well-formed request or rejects
// with a SocksProtocolError, never anything else; a request is exactly what
// was sent (greeting, request and the bytes after it put back together give
// the input byte for byte); the client is answered as RFC 1928 says: the
// method choice ("no authentication") on success, and on failure that answer
// so far followed by the error's own reply.

import net, { isIPv4, isIPv6 } from 'node:net'
import { parseIPv6 } from '../../src/policy/index.js'
import { readSocksRequest, SocksProtocolError, type SocksRequest } from '../../src/proxy/socks5.js'
import { listenLoopback, portOf, readUntilClosed, within, writeInPieces } from '../lib/loopback.js'
import { property, PropertyViolation, same } from '../lib/property.js'

const COMMAND_BYTES = { connect: 0x01, bind: 0x02, 'udp-associate': 0x03 } as const

interface ServerSide {
  readonly outcome: Promise<{ request: SocksRequest; after: Buffer } | { error: unknown }>
}

let server: net.Server | undefined
let nextConnection: ((socket: net.Socket) => void) | undefined

async function loopbackServer(): Promise<net.Server> {
  server ??= await listenLoopback((socket) => nextConnection?.(socket))
  return server
}

function serve(socket: net.Socket): ServerSide['outcome'] {
  return readSocksRequest(socket, { timeoutMs: 60_000 }).then(
    async (request) => {
      // What the client sent after the request and we had not read yet.
      const after = readUntilClosed(socket)
      socket.resume()
      socket.end()
      return { request, after: await after }
    },
    (error: unknown) => ({ error }),
  )
}

/** The request message as it must have been on the wire. */
function encodeRequest(request: SocksRequest): Buffer {
  let address: Buffer
  if (request.addressType === 'ipv4') {
    property(isIPv4(request.host), 'an IPv4 request whose host is not a dotted quad', request.host)
    address = Buffer.from([0x01, ...request.host.split('.').map(Number)])
  } else if (request.addressType === 'ipv6') {
    const ip = parseIPv6(request.host)
    property(
      isIPv6(request.host) && ip !== undefined,
      'an IPv6 request whose host is not IPv6',
      request.host,
    )
    address = Buffer.concat([
      Buffer.from([0x04]),
      Buffer.from(ip.value.toString(16).padStart(32, '0'), 'hex'),
    ])
  } else {
    const name = Buffer.from(request.host, 'utf8')
    property(
      name.length >= 1 && name.length <= 255 && !name.includes(0),
      'a domain that cannot have been sent',
      request.host,
    )
    address = Buffer.concat([Buffer.from([0x03, name.length]), name])
  }
  const port = Buffer.alloc(2)
  property(
    Number.isInteger(request.port) && request.port >= 0 && request.port <= 65535,
    'a port out of range',
    request.port,
  )
  port.writeUInt16BE(request.port)
  return Buffer.concat([Buffer.from([0x05, COMMAND_BYTES[request.command], 0x00]), address, port])
}

export async function fuzz(data: Buffer): Promise<void> {
  if (data.length === 0) return
  const options = data[0]!
  const sent = data.subarray(1)
  const cuts = [options >> 1, (options >> 1) * 3, (options >> 1) * 7]

  const listening = await loopbackServer()
  const accepted = new Promise<ServerSide['outcome']>((resolve) => {
    nextConnection = (socket) => resolve(serve(socket))
  })
  const client = net.connect(portOf(listening), '127.0.0.1')
  const received = readUntilClosed(client)
  client.once('connect', () => writeInPieces(client, sent, cuts))
  const outcome = await within(
    'the handshake did not end',
    accepted.then((served) => served),
  )
  const answers = await within('the connection was not closed', received)

  const method = Buffer.from([0x05, 0x00])
  if ('error' in outcome) {
    const { error } = outcome
    if (!(error instanceof SocksProtocolError))
      throw new PropertyViolation(
        `readSocksRequest rejected with something other than a SocksProtocolError: ${String(error)}`,
      )
    const reply = error.sent ?? Buffer.alloc(0)
    property(
      answers.subarray(answers.length - reply.length).equals(reply),
      'the error reply was not the last thing sent',
      answers,
      error,
    )
    const before = answers.subarray(0, answers.length - reply.length)
    property(
      method.subarray(0, before.length).equals(before),
      'unexpected bytes before the error reply',
      answers,
      error,
    )
    return
  }
  const { request, after } = outcome
  same(answers, method, 'the client was not answered as RFC 1928 says')
  const greeting = sent.subarray(0, 2 + sent[1]!)
  same(
    Buffer.concat([greeting, encodeRequest(request), request.rest, after]),
    sent,
    'the request read is not what was sent',
  )
}
