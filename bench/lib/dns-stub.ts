// A DNS server on a loopback address for bench:proxy's latency figure, so that
// a proxy's lookup of a new name is a real query and answer ("DNS cold"). It
// answers A questions for a zone and its subdomains with 127.0.0.1 (TTL 300),
// AAAA with no records, and everything else with NXDOMAIN; it counts questions
// by name. Port 53, because squid asks no other port (binding it needs root).

import dgram from 'node:dgram'
import * as dnsPacket from 'dns-packet'

export interface BenchDns {
  /** The address it listens on (port 53). */
  readonly address: string
  /** Questions asked for names that end in `suffix`. */
  questions(suffix: string): number
  close(): Promise<void>
}

export async function startBenchDns(address: string, zone: string): Promise<BenchDns> {
  const asked = new Map<string, number>()
  const socket = dgram.createSocket('udp4')
  socket.on('message', (message, peer) => {
    let query: dnsPacket.Packet
    try {
      query = dnsPacket.decode(message)
    } catch {
      return
    }
    const question = query.questions?.[0]
    if (!question) return
    const name = question.name.toLowerCase()
    asked.set(name, (asked.get(name) ?? 0) + 1)
    const inZone = name === zone || name.endsWith(`.${zone}`)
    const answers =
      inZone && question.type === 'A'
        ? [{ type: 'A' as const, name: question.name, ttl: 300, data: '127.0.0.1' }]
        : []
    const reply = dnsPacket.encode({
      id: query.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      rcode: inZone ? 'NOERROR' : 'NXDOMAIN',
      questions: [question],
      answers,
    } as dnsPacket.Packet)
    socket.send(reply, peer.port, peer.address)
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(53, address, () => {
      socket.off('error', reject)
      resolve()
    })
  })
  return {
    address,
    questions: (suffix) => {
      let n = 0
      for (const [name, count] of asked) if (name.endsWith(suffix)) n += count
      return n
    },
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
}
