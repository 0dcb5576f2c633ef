// The transparent TLS listener. DNS steering sends port-443 traffic of
// programs that ignore proxy variables here; the ClientHello's SNI names the
// target, and no SNI means no target.

import net from 'node:net'
import type { ProxyContext } from './context.js'
import { Exchange } from './exchange.js'
import { guard } from './guard.js'
import { runTunnel } from './tunnel.js'

const NOTHING = Buffer.alloc(0)

/** `targetPort` is the destination port decisions are made for (443 when steered by DNS). */
export function createTransparentTlsServer(
  ctx: ProxyContext,
  targetPort: () => number,
): net.Server {
  return net.createServer(
    { allowHalfOpen: true, noDelay: true, pauseOnConnect: true },
    (socket) => {
      ctx.tracker.add(socket)
      socket.on('error', () => socket.destroy())
      const exchange = new Exchange(ctx, 'tls', socket)
      const tunnel = runTunnel(ctx, {
        client: socket,
        initial: NOTHING,
        exchange,
        target: { kind: 'transparent', port: targetPort() },
      })
      guard(ctx, exchange, () => socket.destroy(), tunnel)
    },
  )
}
