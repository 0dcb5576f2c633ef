// A DNS server on a loopback address that a test or a benchmark controls, for
// the proxy's own lookups (UDP, as c-ares asks). It answers A and AAAA
// questions from the records set for a name (or from `zone` for names it was
// not told about), with the TTL chosen, NXDOMAIN for names it does not know,
// or the error code set for a name; and it records every question, so callers
// can count lookups. Tests run it on 127.0.0.1 on any port; bench:proxy on
// port 53 of an address of its own, because squid asks no other port.

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

export interface DnsStubOptions {
  /** Default 127.0.0.1. */
  readonly address?: string
  /** Default 0: any free port. */
  readonly port?: number
  /** Records for the names no set() named (a zone answered as a whole). */
  readonly zone?: (name: string) => DnsRecords | undefined
}

export interface DnsStub {
  /** `address:port`, as a resolver's server list takes it. */
  readonly server: string
  readonly address: string
  set(name: string, records: DnsRecords): void
  /** The questions asked so far, optionally only those for `name`. */
  questions(name?: string): DnsQuestion[]
  close(): Promise<void>
}

/** The response codes a stub sends, as the low four bits of a response's flags (RFC 1035). */
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const

export async function startDnsStub(options: DnsStubOptions = {}): Promise<DnsStub> {
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
    const found = records.get(name) ?? options.zone?.(name)
    const ttl = found?.ttl ?? 60
    const data =
      question.type === 'A' ? (found?.a ?? []) : question.type === 'AAAA' ? (found?.aaaa ?? []) : []
    // dns-packet reads the response code from the flags only (a `rcode` field is ignored).
    const rcode = found?.rcode ?? (found ? 'NOERROR' : 'NXDOMAIN')
    const answer = dnsPacket.encode({
      id: query.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | RCODE[rcode],
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
  const address = options.address ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(options.port ?? 0, address, () => {
      socket.off('error', reject)
      resolve()
    })
  })
  return {
    server: `${address}:${socket.address().port}`,
    address,
    set: (name, r) => void records.set(name, r),
    questions: (name) => (name === undefined ? [...asked] : asked.filter((q) => q.name === name)),
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
}
