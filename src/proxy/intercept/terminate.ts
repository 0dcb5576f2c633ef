// The interception stage: an allowed TLS tunnel to a host the proxy must read
// (endpoint rules, a bound secret, `inspect: true`; see
// policy/interception.ts) is answered with a leaf of the sandbox CA for the
// checked name, and what the client sends inside is served request by request
// by the proxy's own HTTP servers and forwarder: decided (method and path
// too), secrets put in, logged with the status, sent upstream over TLS that
// is verified against the system roots plus the operator's CAs.
//
// ALPN: the client is offered h2 and http/1.1 and served in what it chose
// (HTTP/2 by Node's http2 server, HTTP/1.1 by the tunnel HTTP server); the
// upstream side negotiates on its own (undici: h2 where the server offers it).
// A client that negotiated http/1.1 and then sends the h2 preface is refused
// by the HTTP/1.1 parser, as on every other plain-HTTP path.

import tls from 'node:tls'
import type net from 'node:net'
import type { ProxyContext, TunnelTarget } from '../context.js'
import type { Exchange } from '../exchange.js'
import type { H2Server } from './h2-server.js'

export type HandOffH1 = (
  socket: net.Socket,
  buffered: Buffer,
  target: TunnelTarget,
  intercepted: true,
) => void

const ALPN = ['h2', 'http/1.1']

/**
 * Terminates the client's TLS for `target.host` and hands the decrypted side to
 * the server for the protocol it chose. `clientHello`: the bytes the peek read.
 * The tunnel's exchange is logged only if the handshake fails; once it succeeds,
 * every request writes its own line.
 */
export async function interceptTunnel(
  ctx: ProxyContext,
  servers: { readonly h1: HandOffH1; readonly h2: H2Server },
  client: net.Socket,
  clientHello: Buffer,
  target: TunnelTarget,
  exchange: Exchange,
): Promise<void> {
  const minter = ctx.interception.minter
  if (!minter) throw new Error('interceptTunnel without a CA') // the tunnel refuses before
  let context: tls.SecureContext
  try {
    context = (await minter.leafFor(target.host)).context
  } catch (err) {
    exchange.fail(`interception: no certificate for ${target.host}: ${(err as Error).message}`)
    exchange.end()
    return void client.destroy()
  }
  if (client.destroyed) return
  // The peeked ClientHello goes back first: TLSSocket reads what the socket already holds.
  client.unshift(clientHello)
  const secure = new tls.TLSSocket(client, {
    isServer: true,
    secureContext: context,
    ALPNProtocols: ALPN,
  })
  const deadline = setTimeout(() => secure.destroy(), ctx.timeouts.handshakeMs)
  const failed = (err: Error): void => {
    clearTimeout(deadline)
    // A client that does not trust the sandbox CA ends here: say so in the line.
    exchange.fail(`interception: TLS handshake with the client failed: ${err.message}`)
    exchange.end()
    secure.destroy()
  }
  secure.once('error', failed)
  secure.once('secure', () => {
    clearTimeout(deadline)
    secure.off('error', failed)
    secure.on('error', () => secure.destroy())
    // What tls.Server does for its own sockets once they are secure: HTTP/2 sessions wait
    // for a 'secureConnect' a server-side socket never emits while this is still true.
    ;(secure as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false
    if (secure.alpnProtocol === 'h2') servers.h2.handOff(secure, target)
    else servers.h1(secure, Buffer.alloc(0), target, true)
  })
  secure.once('close', () => {
    clearTimeout(deadline)
    client.destroy()
  })
}
