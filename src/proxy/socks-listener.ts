// The SOCKS5 listener: CONNECT only. BIND and UDP ASSOCIATE are refused with
// "command not supported"; a refused target gets reply 0x02 ("connection not
// allowed by ruleset"). Domain targets are decided by name, IP targets by IP rules.

import net from 'node:net'
import type { ProxyContext } from './context.js'
import { Exchange } from './exchange.js'
import { guard } from './guard.js'
import { readSocksRequest, sendSocksReply, SocksProtocolError, SocksReplyCode } from './socks5.js'
import { runTunnel, type TunnelRefusal } from './tunnel.js'
import { closeGracefully } from './wire.js'

function replyCodeFor(refusal: TunnelRefusal): SocksReplyCode {
  if (refusal.kind !== 'upstream') return SocksReplyCode.notAllowed
  switch (refusal.error.kind) {
    case 'resolve':
      return SocksReplyCode.hostUnreachable
    case 'timeout':
      return SocksReplyCode.ttlExpired
    default:
      return SocksReplyCode.connectionRefused
  }
}

export function createSocksServer(ctx: ProxyContext): net.Server {
  const server = net.createServer(
    { allowHalfOpen: true, noDelay: true, pauseOnConnect: true },
    (socket) => {
      ctx.tracker.add(socket)
      socket.on('error', () => socket.destroy())
      const exchange = new Exchange(ctx, 'socks', socket)
      guard(ctx, exchange, () => socket.destroy(), handle(ctx, socket, exchange))
    },
  )
  return server
}

async function handle(ctx: ProxyContext, socket: net.Socket, exchange: Exchange): Promise<void> {
  let request
  try {
    request = await readSocksRequest(socket, { timeoutMs: ctx.timeouts.handshakeMs })
  } catch (err) {
    // A broken handshake is the client's problem, not a decision: close quietly.
    if (err instanceof SocksProtocolError) closeGracefully(socket)
    else socket.destroy()
    return
  }
  if (request.command !== 'connect') {
    sendSocksReply(socket, SocksReplyCode.commandNotSupported)
    closeGracefully(socket)
    return
  }
  await runTunnel(ctx, {
    client: socket,
    initial: request.rest,
    exchange,
    target: {
      kind: 'named',
      host: request.host,
      port: request.port,
      accept: () => sendSocksReply(socket, SocksReplyCode.succeeded),
      refuse: (refusal) => {
        sendSocksReply(socket, replyCodeFor(refusal))
        closeGracefully(socket)
      },
    },
  })
}
