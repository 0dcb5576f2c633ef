// A DNS server on loopback for the proxy's own lookups (UDP, as c-ares asks):
// it answers A and AAAA questions from records the test sets, with the TTL the
// test chooses, NXDOMAIN for names it does not know, or the error code set for
// a name; and it records every question, so a test can count lookups.

import dgram from 'node:dgram'
import * as dnsPacket from 'dns-packet'

export interface DnsRecords {
  readonly a?: readonly string[]
  readonly aaaa?: readonly string[]
  /** Seconds; 60 by default. */
  readonly ttl?: number
  /** Answer with this error code instead of records. */
  readonly rcode?: 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED'
}

export interface DnsQuestion {
  readonly name: string
  readonly type: string
}

export interface DnsUpstream {
  /** `127.0.0.1:port`, as a resolver's server list takes it. */
  readonly server: string
  set(name: string, records: DnsRecords): void
  /** The questions asked so far, optionally only those for `name`. */
  questions(name?: string): DnsQuestion[]
  close(): Promise<void>
}

export async function startDnsUpstream(): Promise<DnsUpstream> {
  const records = new Map<string, DnsRecords>()
  const asked: DnsQuestion[] = []
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
    asked.push({ name, type: question.type })
    const found = records.get(name)
    const ttl = found?.ttl ?? 60
    const data =
      question.type === 'A' ? (found?.a ?? []) : question.type === 'AAAA' ? (found?.aaaa ?? []) : []
    const answer = dnsPacket.encode({
      id: query.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      rcode: found?.rcode ?? (found ? 'NOERROR' : 'NXDOMAIN'),
      questions: [question],
      answers: found?.rcode
        ? []
        : data.map((address) => ({
            type: question.type as 'A' | 'AAAA',
            name: question.name,
            ttl,
            data: address,
          })),
    } as dnsPacket.Packet)
    socket.send(answer, peer.port, peer.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return {
    server: `127.0.0.1:${socket.address().port}`,
    set: (name, r) => void records.set(name, r),
    questions: (name) => (name === undefined ? [...asked] : asked.filter((q) => q.name === name)),
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
}
