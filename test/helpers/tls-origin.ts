// A loopback HTTPS origin for the interception tests: h2 and HTTP/1.1 (ALPN),
// with a certificate from the test CA. It records every request it received
// (method, path, headers, protocol version) and answers with them as JSON, so a
// test checks what reached the origin, not what the proxy says it sent.
// `/sse` streams events one by one until told to send the next (no buffering
// test), `/grpc-like` answers with trailers.

import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { TestCerts } from './certs.js'

export interface ReceivedRequest {
  readonly method: string
  readonly path: string
  readonly authority: string | undefined
  readonly httpVersion: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: string
}

export interface TlsOrigin {
  readonly port: number
  readonly received: ReceivedRequest[]
  /** Lets `/sse` send its next event. */
  next(): void
  close(): Promise<void>
}

export async function startTlsOrigin(certs: TestCerts): Promise<TlsOrigin> {
  const received: ReceivedRequest[] = []
  const waiting: (() => void)[] = []
  let credit = 0
  const next = (): void => {
    const w = waiting.shift()
    if (w) w()
    else credit++
  }
  const turn = (): Promise<void> =>
    credit > 0 ? Promise.resolve(void credit--) : new Promise((r) => waiting.push(r))
  const server = http2.createSecureServer({
    key: certs.key,
    cert: certs.cert,
    allowHTTP1: true,
  })
  server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const entry: ReceivedRequest = {
        method: req.method,
        path: req.url,
        authority: req.authority || undefined,
        httpVersion: req.httpVersion,
        headers: { ...req.headers },
        body: Buffer.concat(chunks).toString(),
      }
      received.push(entry)
      if (req.url === '/sse') return void streamEvents(res, turn)
      if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
        res.write('body ')
        res.addTrailers({ 'x-checksum': 'abc123' })
        return void res.end('done')
      }
      const body = JSON.stringify(entry)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    received,
    next,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        // Sessions kept alive by clients would hold close() open.
        for (const w of waiting.splice(0)) w()
      }),
  }
}

async function streamEvents(
  res: http2.Http2ServerResponse,
  turn: () => Promise<void>,
): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  for (let i = 1; i <= 3; i++) {
    await turn()
    res.write(`data: event ${i}\n\n`)
  }
  res.end()
}
