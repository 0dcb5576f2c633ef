// gRPC through interception, client and server from @grpc/grpc-js: h2 on both
// sides, the status in trailers, a server stream, and an endpoint rule that
// refuses one method (the client sees PERMISSION_DENIED from the 403). The
// client reaches the proxy's transparent TLS port, as a sandbox steered by DNS
// does; the origin's certificate verifies against the test CA the proxy trusts.

import * as grpc from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, type CaMaterial } from '../../../src/tls/ca.js'
import { testCerts, type TestCerts } from '../../helpers/certs.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'

const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString()) as unknown,
}

/** A service defined in code (no .proto): Echo (unary), Count (server stream), Secret (refused). */
const SERVICE: grpc.ServiceDefinition = {
  Echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
  Count: {
    path: '/test.Echo/Count',
    requestStream: false,
    responseStream: true,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
  Secret: {
    path: '/test.Echo/Secret',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
}

type EchoClient = grpc.Client & {
  Echo(
    req: unknown,
    md: grpc.Metadata,
    cb: (err: grpc.ServiceError | null, res?: unknown) => void,
  ): grpc.ClientUnaryCall
  Count(req: unknown): grpc.ClientReadableStream<unknown>
  Secret(req: unknown, cb: (err: grpc.ServiceError | null, res?: unknown) => void): void
}

let certs: TestCerts
let server: grpc.Server
let proxy: TestProxy
let sandboxCa: CaMaterial
let client: EchoClient
let O: number
const received: Record<string, string>[] = []

beforeAll(async () => {
  certs = await testCerts()
  server = new grpc.Server()
  server.addService(SERVICE, {
    Echo: (
      call: grpc.ServerUnaryCall<{ text: string }, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) => {
      received.push(call.metadata.getMap() as Record<string, string>)
      const trailer = new grpc.Metadata()
      trailer.set('x-served-by', 'origin')
      cb(null, { echo: call.request.text }, trailer)
    },
    Count: (call: grpc.ServerWritableStream<{ n: number }, unknown>) => {
      for (let i = 1; i <= call.request.n; i++) call.write({ i })
      call.end()
    },
    Secret: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { leaked: true }),
  })
  O = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      '127.0.0.1:0',
      grpc.ServerCredentials.createSsl(null, [{ private_key: certs.key, cert_chain: certs.cert }]),
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  )
  sandboxCa = await createCertificateAuthority({ commonName: 'intercept grpc sandbox' })
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [
          { methods: ['POST'], path: '/test.Echo/Echo', action: 'allow' },
          { methods: ['POST'], path: '/test.Echo/Count', action: 'allow' },
        ],
      },
    ],
    resolve: loopbackNames(),
    listeners: ['tls'],
    extra: {
      transparentPorts: { tls: O },
      interception: { ca: sandboxCa, upstreamCa: certs.ca.toString() },
    },
  })
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Echo')
  client = new Client(
    `127.0.0.1:${proxy.port('tls')}`,
    grpc.credentials.createSsl(Buffer.from(sandboxCa.cert)),
    {
      'grpc.ssl_target_name_override': 'allowed.test',
      'grpc.default_authority': `allowed.test:${O}`,
    },
  ) as unknown as EchoClient
})

afterAll(async () => {
  client?.close()
  await proxy?.close()
  server?.forceShutdown()
})

describe('gRPC through interception', () => {
  it('makes a unary call with metadata, and the trailers come back', async () => {
    const since = proxy.mark()
    const md = new grpc.Metadata()
    md.set('x-request', 'r1')
    let call: grpc.ClientUnaryCall | undefined
    const answered = new Promise<unknown>((resolve, reject) => {
      call = client.Echo({ text: 'hi' }, md, (err, res) => {
        if (err) reject(err)
        else resolve(res)
      })
    })
    const status = new Promise<grpc.StatusObject>((resolve) =>
      (call as grpc.ClientUnaryCall).on('status', resolve),
    )
    const res = await answered
    const trailers = (await status).metadata
    expect(res).toEqual({ echo: 'hi' })
    expect(trailers.get('x-served-by')).toEqual(['origin'])
    expect(received.at(-1)?.['x-request']).toBe('r1')
    const e = await proxy.waitForEvent((x) => x.path === '/test.Echo/Echo', { since })
    expect(e).toMatchObject({ action: 'allow', method: 'POST', status: 200, protocol: 'tls' })
  })

  it('streams server messages', async () => {
    const got: unknown[] = []
    await new Promise<void>((resolve, reject) => {
      const stream = client.Count({ n: 5 })
      stream.on('data', (m) => got.push(m))
      stream.on('error', reject)
      stream.on('end', () => resolve())
    })
    expect(got).toEqual([1, 2, 3, 4, 5].map((i) => ({ i })))
  })

  it('refuses a method the endpoint rules do not allow: the call fails, the origin never runs it', async () => {
    const since = proxy.mark()
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.Secret({}, (e) => resolve(e as grpc.ServiceError)),
    )
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED)
    const e = await proxy.waitForEvent((x) => x.path === '/test.Echo/Secret', { since })
    expect(e).toMatchObject({ action: 'deny', reason: 'no-endpoint-match', method: 'POST' })
  })
})
