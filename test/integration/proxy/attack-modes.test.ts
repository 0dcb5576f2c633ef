// In report mode and with `onUnknown: ask`, with a tcp: rule in the profile (so
// raw TCP is possible somewhere, and the tunnel stages ask whether the server
// may speak first), the sandbox tries to get unread bytes through a tunnel the
// mode lets pass by name: silence, opaque bytes, and a ClientHello for another
// host on the tcp: rule's own port. Unreadable payloads and SNI mismatches
// refuse in every mode; the recording origins show nothing arrived.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clientHello, marker } from '../../helpers/attacks.js'
import { RawClient } from '../../helpers/clients.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { startRecordingOrigin, type RecordingOrigin } from '../../helpers/recording-origin.js'

let origin: RecordingOrigin // plain HTTP, allowed by name on its port
let raw: RecordingOrigin // the port of the tcp: rule

beforeAll(async () => {
  origin = await startRecordingOrigin()
  raw = await startRecordingOrigin()
})

afterAll(async () => {
  await Promise.all([origin?.close(), raw?.close()])
})

describe.each(['report', 'ask'] as const)('%s mode with a tcp: rule elsewhere', (mode) => {
  let proxy: TestProxy
  let O: number
  let R: number

  beforeAll(async () => {
    O = origin.port
    R = raw.port
    proxy = await startTestProxy({
      ...(mode === 'report'
        ? { mode: 'report' as const }
        : { policy: { onUnknown: 'ask', approvalTimeoutMs: 200 } }),
      allow: [`allowed.test:${O}`, `tcp:ssh.test:${R}`],
      resolve: loopbackNames(),
      listeners: ['http', 'socks'],
      timeouts: { firstBytesMs: 300 },
    })
  })

  afterAll(async () => {
    await proxy?.close()
  })

  it.each(['allowed.test', 'evil.test'])(
    'a silent client in a tunnel to %s: the server may not speak first, nothing is dialled',
    async (host) => {
      const connections = origin.connections()
      const client = await RawClient.connect(proxy.port('http'))
      client.write(`CONNECT ${host}:${O} HTTP/1.1\r\nHost: ${host}:${O}\r\n\r\n`)
      await client.waitForClose()
      expect(origin.connections()).toBe(connections)
    },
  )

  it.each(['allowed.test', 'evil.test'])(
    'opaque bytes in a tunnel to %s are refused and never arrive',
    async (host) => {
      const m = marker(`opaque-${mode}`)
      const client = await RawClient.connect(proxy.port('socks'))
      const name = Buffer.from(host)
      const port = Buffer.from([O >> 8, O & 0xff])
      client.write(Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, name.length]), name, port]))
      await client.waitFor((d) => d.length >= 12)
      if (client.data[3] === 0x00) client.write(Buffer.from(`\u0000\u0001${m}\r\n\r\n`, 'latin1'))
      await client.waitForClose()
      expect(origin.text()).not.toContain(m)
    },
  )

  it('a ClientHello for another host on the tcp: rule port is refused; none of it arrives', async () => {
    const hello = await clientHello('evil.test')
    const client = await RawClient.connect(proxy.port('http'))
    client.write(`CONNECT ssh.test:${R} HTTP/1.1\r\nHost: ssh.test:${R}\r\n\r\n`)
    await client.waitForText('\r\n\r\n')
    client.write(hello)
    await client.waitForClose()
    expect(raw.text()).not.toContain('evil.test')
  })
})
