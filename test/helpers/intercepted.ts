// A TLS connection through the proxy to a host it intercepts: a CONNECT or
// SOCKS5 tunnel, then TLS that trusts only the sandbox CA (the proxy's leaf
// is what answers), with the ALPN list the test asks for. The raw variant
// sends bytes the test wrote itself and reads everything until the proxy closes.

import net from 'node:net'
import tls from 'node:tls'
import { openTunnel, socksConnect } from './clients.js'

export interface InterceptedTlsOptions {
  /** transparent: straight to the proxy's transparent TLS port, the SNI names the host. */
  readonly via: 'connect' | 'socks' | 'transparent'
  readonly proxyPort: number
  readonly host: string
  readonly port: number
  /** The sandbox CA (PEM). */
  readonly ca: string
  readonly alpn?: readonly string[]
  /** TLS versions, for the 1.2 vs 1.3 checks. */
  readonly maxVersion?: tls.SecureVersion
}

export async function interceptedTls(o: InterceptedTlsOptions): Promise<tls.TLSSocket> {
  let socket: net.Socket
  if (o.via === 'transparent') {
    socket = net.connect({ host: '127.0.0.1', port: o.proxyPort })
  } else if (o.via === 'connect') {
    const tunnel = await openTunnel(o.proxyPort, `${o.host}:${o.port}`)
    if (tunnel.status !== 200) throw new Error(`CONNECT answered ${tunnel.status}: ${tunnel.body}`)
    socket = tunnel.socket
  } else {
    const opened = await socksConnect(o.proxyPort, o.host, o.port)
    if (opened.code !== 0) throw new Error(`SOCKS answered ${opened.code}`)
    socket = opened.socket
  }
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      servername: o.host,
      ca: o.ca,
      ALPNProtocols: [...(o.alpn ?? ['http/1.1'])],
      ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
    })
    secure.once('secureConnect', () => {
      secure.off('error', reject)
      resolve(secure)
    })
    secure.once('error', reject)
  })
}

/** Writes `request` on an intercepted connection and reads until the proxy closes it. */
export async function rawExchange(
  options: InterceptedTlsOptions,
  request: string | Buffer,
): Promise<string> {
  const secure = await interceptedTls(options)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    secure.on('data', (c: Buffer) => chunks.push(c))
    secure.on('error', () => undefined)
    secure.once('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
    secure.write(request)
  })
}
