// The transparent TLS listener. DNS steering sends port-443 traffic of
// programs that ignore proxy variables here; the ClientHello's SNI names the
// target, and no SNI means no target.

import net from 'node:net'
import type { ProxyContext } from './context.js'
import { runTunnel } from './tunnel.js'

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
      void runTunnel(ctx, {
        protocol: 'tls',
        client: socket,
        host: '',
        port: targetPort(),
        initial: Buffer.alloc(0),
      }).catch(() => socket.destroy())
    },
  )
}
