// The sandbox's DNS server. It never forwards anything: an A query for a name
// the policy allows is answered with a fixed address (the proxy's own), an AAAA
// query for an allowed name gets NOERROR with no records (so clients fall back
// to IPv4), and everything else is REFUSED. No query ever leaves the proxy, so
// DNS cannot be used as an exfiltration channel.
//
// PTR queries are refused like every other type, including PTR for answerAddress: a
// reverse name would only add surface, and REFUSED fails as fast as NXDOMAIN in the
// resolvers that matter (glibc, musl, c-ares). Responses to queries (QR=1) are dropped so
// two servers can never be made to answer each other in a loop.
//
// The sandbox is hostile. Every packet is handled on its own inside a
// try/catch; a malformed packet gets FORMERR when its ID can be read and is
// dropped otherwise; TCP connections are bounded in number, message size and
// idle time.

import * as dgram from 'node:dgram'
import * as net from 'node:net'
import type { AddressInfo } from 'node:net'
import * as dnsPacket from 'dns-packet'
import { joinAuthority } from '../policy/index.js'

/** What decide() returns: whether to answer, and anything the caller wants back in the event. */
export interface DnsQuestionDecision {
  readonly allow: boolean
}

export type DnsQueryOutcome =
  /** A query for an allowed name: one A record with `answerAddress`. */
  | 'answered'
  /** AAAA query for an allowed name: NOERROR, no records. */
  | 'empty'
  /** Denied name, any type other than A/AAAA, a class other than IN, or a name that cannot be a host name. */
  | 'refused'
  /** Unparsable message, not exactly one question, a bad OPT record, or an unsupported EDNS version (BADVERS). */
  | 'formerr'
  /** Opcode other than QUERY. */
  | 'notimp'

export interface DnsQueryEvent<D extends DnsQuestionDecision = DnsQuestionDecision> {
  /**
   * Question name as received (case preserved, no trailing dot, `.` for the root). A name
   * whose labels hold bytes outside printable ASCII, or a `.` or `\` inside a label, is
   * given in RFC 1035 presentation form (`\.`, `\\`, `\DDD`) and is always refused.
   * Empty when no question could be read.
   */
  name: string
  /** Question type (`A`, `AAAA`, `TXT`, `HTTPS`, `TYPE1234`, …); empty when no question could be read. */
  type: string
  transport: 'udp' | 'tcp'
  /** `address:port` of the client (`[v6]:port` for IPv6). */
  client: string
  outcome: DnsQueryOutcome
  /** The response code sent (`NOERROR`, `REFUSED`, `FORMERR`, `NOTIMP`, `BADVERS`). */
  rcode: string
  /** Set when a UDP answer did not fit the client's size limit and was sent with TC=1 and no records. */
  truncated?: true
  /** What decide() returned, when the query was one it is asked about (see DnsServerOptions.decide). */
  decision?: D
  /** Why the query was refused or rejected without a decision (a malformed message, class CH, …). */
  problem?: string
}

export interface DnsServerLimits {
  /** Close a TCP connection after this long without traffic. Default 10 000 ms. */
  tcpIdleTimeoutMs?: number
  /** Concurrent TCP connections; more are closed on accept. Default 64. */
  maxTcpConnections?: number
  /**
   * Largest query accepted, in bytes. A longer TCP frame closes the connection; a longer UDP
   * datagram gets FORMERR without being parsed. Default 4096.
   */
  maxMessageBytes?: number
}

export interface DnsServerOptions<D extends DnsQuestionDecision = DnsQuestionDecision> {
  udp?: { host: string; port: number }
  tcp?: { host: string; port: number }
  /** IPv4 address put in A answers for allowed names. */
  answerAddress: string
  /** TTL of A answers. Default 30. */
  ttlSeconds?: number
  /**
   * The policy decision for a question; called once per well-formed query of class IN whose
   * name is a plausible host name, whatever its type, and for nothing else. Only A and AAAA
   * questions are ever answered, whatever it says. The name is passed as received (case
   * preserved, no trailing dot): canonicalisation is the caller's job. If it throws (or its
   * promise rejects), the query is refused. A promise (a name waiting for an approval)
   * delays only this query's answer; it must settle before the client's resolver gives up.
   * What it returns comes back in the query's event.
   */
  decide(name: string, type: string, client: string): D | Promise<D>
  /** Called once per message that gets a response (dropped messages produce no event). Must not throw; if it does, the error is swallowed. */
  onQuery?(event: DnsQueryEvent<D>): void
  limits?: DnsServerLimits
}

export interface DnsServerHandle {
  udpAddress?: AddressInfo
  tcpAddress?: AddressInfo
  /** TCP connections currently open. */
  openTcpConnections(): number
  close(): Promise<void>
}

const DEFAULT_TTL_SECONDS = 30
const DEFAULT_TCP_IDLE_TIMEOUT_MS = 10_000
const DEFAULT_MAX_TCP_CONNECTIONS = 64
const DEFAULT_MAX_MESSAGE_BYTES = 4096
/** UDP payload size we advertise in OPT records (the DNS flag day 2020 value). */
const ADVERTISED_UDP_PAYLOAD = 1232
/** Limit for UDP responses when the query has no OPT record (RFC 1035). */
const CLASSIC_UDP_LIMIT = 512

const TYPE_A = 1
const TYPE_AAAA = 28
const CLASS_IN = 1
const OPCODE_QUERY = 0

const RCODE_NOERROR = 0
const RCODE_FORMERR = 1
const RCODE_NOTIMP = 4
const RCODE_REFUSED = 5
/** Extended RCODE 16: upper 8 bits go in the OPT record, lower 4 in the header. */
const RCODE_BADVERS = 16

const FLAG_QR = 0x8000
const FLAG_AA = 0x0400
const FLAG_TC = 0x0200
const FLAG_RD = 0x0100

const RCODE_NAMES: Record<number, string> = {
  [RCODE_NOERROR]: 'NOERROR',
  [RCODE_FORMERR]: 'FORMERR',
  [RCODE_NOTIMP]: 'NOTIMP',
  [RCODE_REFUSED]: 'REFUSED',
  [RCODE_BADVERS]: 'BADVERS',
}

interface RawQuestion {
  labels: Buffer[]
  /** Length of the name written uncompressed. */
  wireNameLength: number
  qtype: number
  qclass: number
}

interface QueryEdns {
  udpPayloadSize: number
  version: number
  dnssecOk: boolean
}

interface Reply<D> {
  rcode: number
  outcome: DnsQueryOutcome
  question?: RawQuestion
  edns?: QueryEdns
  name: string
  type: string
  decision?: D
  problem?: string
}

export async function startDnsServer<D extends DnsQuestionDecision>(
  opts: DnsServerOptions<D>,
): Promise<DnsServerHandle> {
  if (!opts.udp && !opts.tcp) throw new Error('startDnsServer: give udp, tcp or both')
  if (!net.isIPv4(opts.answerAddress)) {
    throw new Error(`startDnsServer: answerAddress "${opts.answerAddress}" is not an IPv4 address`)
  }
  const ttl = opts.ttlSeconds ?? DEFAULT_TTL_SECONDS
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) {
    throw new Error(`startDnsServer: ttlSeconds ${ttl} must be an integer from 0 to 2^31-1`)
  }
  const idleMs = opts.limits?.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS
  const maxConnections = opts.limits?.maxTcpConnections ?? DEFAULT_MAX_TCP_CONNECTIONS
  const maxMessageBytes = Math.min(opts.limits?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, 65535)

  const responder = new Responder(opts, ttl, maxMessageBytes)

  let udp: dgram.Socket | undefined
  let tcp: net.Server | undefined
  const sockets = new Set<net.Socket>()
  try {
    if (opts.udp) udp = await startUdp(opts.udp, responder)
    if (opts.tcp) {
      tcp = await startTcp(opts.tcp, responder, sockets, {
        idleMs,
        maxConnections,
        maxMessageBytes,
      })
    }
  } catch (err) {
    udp?.close()
    throw err
  }

  let closing: Promise<void> | undefined
  const handle: DnsServerHandle = {
    openTcpConnections: () => sockets.size,
    close() {
      closing ??= Promise.all([
        udp ? new Promise<void>((resolve) => udp!.close(() => resolve())) : undefined,
        tcp
          ? new Promise<void>((resolve) => {
              tcp!.close(() => resolve())
              for (const s of sockets) s.destroy()
            })
          : undefined,
      ]).then(() => undefined)
      return closing
    },
  }
  if (udp) handle.udpAddress = udp.address()
  if (tcp) handle.tcpAddress = tcp.address() as AddressInfo
  return handle
}

function startUdp(
  bind: { host: string; port: number },
  responder: Responder<DnsQuestionDecision>,
): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: net.isIPv6(bind.host) ? 'udp6' : 'udp4' })
  socket.on('message', (msg, rinfo) => {
    try {
      const client = formatClient(rinfo.address, rinfo.port)
      const send = (response: Buffer | undefined): void => {
        if (response) socket.send(response, rinfo.port, rinfo.address, () => {})
      }
      const response = responder.respond(msg, 'udp', client)
      if (response instanceof Promise) void response.then(send, () => undefined)
      else send(response)
    } catch {
      // Never let one datagram take the server down.
    }
  })
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(bind.port, bind.host, () => {
      socket.off('error', reject)
      // Errors after bind (e.g. ICMP-triggered send failures) must not crash the process.
      socket.on('error', () => {})
      resolve(socket)
    })
  })
}

function startTcp(
  bind: { host: string; port: number },
  responder: Responder<DnsQuestionDecision>,
  sockets: Set<net.Socket>,
  limits: { idleMs: number; maxConnections: number; maxMessageBytes: number },
): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: false }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    socket.setTimeout(limits.idleMs, () => socket.destroy())
    const client = formatClient(socket.remoteAddress ?? '?', socket.remotePort ?? 0)

    let buffered: Buffer = Buffer.alloc(0)
    // Set while the client is not reading its responses: stop reading its queries until the
    // kernel buffer drains (the idle timeout ends a client that never reads).
    let blocked = false

    const pump = (): void => {
      try {
        while (!blocked && !socket.destroyed && buffered.length >= 2) {
          const length = buffered.readUInt16BE(0)
          if (length > limits.maxMessageBytes) {
            socket.destroy()
            return
          }
          if (buffered.length < 2 + length) break
          const message = buffered.subarray(2, 2 + length)
          buffered = buffered.subarray(2 + length)
          const response = responder.respond(message, 'tcp', client)
          // A delayed answer goes out when it is ready; responses are matched by ID (RFC 7766).
          if (response instanceof Promise) {
            void response.then(
              (r) => {
                if (r && !socket.destroyed) socket.write(frame(r))
              },
              () => undefined,
            )
            continue
          }
          if (!response) continue
          if (!socket.write(frame(response))) {
            blocked = true
            socket.pause()
          }
        }
        // Do not keep a large received chunk alive for a few leftover bytes.
        if (buffered.length > 0) buffered = Buffer.from(buffered)
      } catch {
        socket.destroy()
      }
    }

    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      pump()
    })
    socket.on('drain', () => {
      blocked = false
      socket.resume()
      pump()
    })
  })
  server.maxConnections = limits.maxConnections
  server.on('error', () => {})
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port: bind.port, host: bind.host }, () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}

/** A DNS-over-TCP frame: the length, then the message. */
function frame(response: Buffer): Buffer {
  const out = Buffer.allocUnsafe(2 + response.length)
  out.writeUInt16BE(response.length, 0)
  response.copy(out, 2)
  return out
}

function formatClient(address: string, port: number): string {
  return joinAuthority(address, port)
}

class Responder<D extends DnsQuestionDecision> {
  constructor(
    private readonly opts: DnsServerOptions<D>,
    private readonly ttl: number,
    private readonly maxMessageBytes: number,
  ) {}

  /**
   * The response to send, or undefined to drop the message; a promise when the
   * policy's answer is delayed. Never throws, and the promise never rejects.
   */
  respond(
    msg: Buffer,
    transport: 'udp' | 'tcp',
    client: string,
  ): Buffer | undefined | Promise<Buffer | undefined> {
    // Without a full header there is no ID to answer to.
    if (msg.length < 12) return undefined
    const id = msg.readUInt16BE(0)
    const flags = msg.readUInt16BE(2)
    // Never answer a response: that is how two servers end up in a loop.
    if (flags & FLAG_QR) return undefined

    let reply: Reply<D> | Promise<Reply<D>>
    try {
      reply = this.decide(msg, flags, client)
    } catch {
      reply = { ...formerr('', ''), problem: 'the message could not be read' }
    }
    if (reply instanceof Promise)
      return reply.then(
        (r) => this.finish(id, flags, r, transport, client),
        () => this.finish(id, flags, formerr('', ''), transport, client),
      )
    return this.finish(id, flags, reply, transport, client)
  }

  private finish(
    id: number,
    flags: number,
    reply: Reply<D>,
    transport: 'udp' | 'tcp',
    client: string,
  ): Buffer {
    let response: Buffer
    let truncated = false
    try {
      const limit =
        transport === 'tcp'
          ? 65535
          : Math.max(CLASSIC_UDP_LIMIT, reply.edns?.udpPayloadSize ?? CLASSIC_UDP_LIMIT)
      response = this.encode(id, flags, reply, true)
      if (response.length > limit) {
        truncated = true
        response = this.encode(id, flags, reply, false)
        if (response.length > limit) response = headerOnly(id, flags, reply.rcode, true)
      }
    } catch {
      reply = { ...formerr(reply.name, reply.type), problem: 'the response could not be encoded' }
      response = headerOnly(id, flags, RCODE_FORMERR, false)
    }

    this.emit({
      name: reply.name,
      type: reply.type,
      transport,
      client,
      outcome: reply.outcome,
      rcode: RCODE_NAMES[reply.rcode] ?? String(reply.rcode),
      ...(truncated ? { truncated: true as const } : {}),
      ...(reply.decision !== undefined ? { decision: reply.decision } : {}),
      ...(reply.problem !== undefined ? { problem: reply.problem } : {}),
    })
    return response
  }

  private decide(msg: Buffer, flags: number, client: string): Reply<D> | Promise<Reply<D>> {
    const opcode = (flags >> 11) & 0xf
    const qdcount = msg.readUInt16BE(4)

    let decoded: dnsPacket.DecodedPacket | undefined
    let question: RawQuestion | undefined
    if (msg.length <= this.maxMessageBytes) {
      try {
        decoded = dnsPacket.decode(msg)
        if (qdcount >= 1) question = readQuestion(msg)
      } catch {
        decoded = undefined
        question = undefined
      }
    }
    const name = question ? presentationName(question.labels) : ''
    const type = question ? typeName(question.qtype) : ''

    const { edns, badOpt } = readEdns(decoded)

    if (opcode !== OPCODE_QUERY) {
      const echo = decoded && qdcount === 1 ? question : undefined
      const problem = `opcode ${opcode} (only QUERY is served)`
      return { rcode: RCODE_NOTIMP, outcome: 'notimp', question: echo, edns, name, type, problem }
    }
    const malformed = this.malformation(msg, decoded, qdcount, question, badOpt)
    if (malformed !== undefined || !question)
      return { ...formerr(name, type), edns, problem: malformed }
    if (edns && edns.version !== 0) {
      const problem = `EDNS version ${edns.version} (only 0 is served)`
      return { rcode: RCODE_BADVERS, outcome: 'formerr', question, edns, name, type, problem }
    }

    const refused = (more: Partial<Reply<D>>): Reply<D> => ({
      rcode: RCODE_REFUSED,
      outcome: 'refused',
      question,
      edns,
      name,
      type,
      ...more,
    })
    if (question.qclass !== CLASS_IN)
      return refused({ problem: `class ${question.qclass} (only IN is served)` })
    // A name with a dot, backslash, space, control or non-ASCII byte inside a label is not a
    // host name, and dns-packet would decode it ambiguously (it joins labels with '.' and
    // decodes bytes as UTF-8). Such names never reach the policy, and nor does the root.
    if (question.labels.length === 0) return refused({ problem: 'the root is not a host name' })
    if (!isPlainName(question.labels))
      return refused({ problem: 'a label holds bytes no host name has' })

    const toReply = (decision: D): Reply<D> => {
      // Whatever decide() says, only address questions are answered.
      const address = question.qtype === TYPE_A || question.qtype === TYPE_AAAA
      if (decision?.allow !== true || !address) return refused({ decision })
      const outcome = question.qtype === TYPE_AAAA ? 'empty' : 'answered'
      return { rcode: RCODE_NOERROR, outcome, question, edns, name, type, decision }
    }
    const failed = (): Reply<D> => refused({ problem: 'the policy check failed' })
    let decision: D | Promise<D>
    try {
      decision = this.opts.decide(name, type, client)
    } catch {
      return failed()
    }
    return decision instanceof Promise ? decision.then(toReply, failed) : toReply(decision)
  }

  /** Why a QUERY message gets FORMERR, or undefined when it is well formed. */
  private malformation(
    msg: Buffer,
    decoded: dnsPacket.DecodedPacket | undefined,
    qdcount: number,
    question: RawQuestion | undefined,
    badOpt: boolean,
  ): string | undefined {
    if (msg.length > this.maxMessageBytes)
      return `the message is longer than ${this.maxMessageBytes} bytes`
    if (!decoded) return 'the message could not be read'
    if (qdcount !== 1) return `${qdcount} questions (exactly one is served)`
    if (!question) return 'the question could not be read'
    if (badOpt) return 'more than one OPT record, or one not owned by the root'
    return undefined
  }

  private encode(id: number, queryFlags: number, reply: Reply<D>, withAnswers: boolean): Buffer {
    const q = reply.question
    // A question we could not read, or whose name dns-packet cannot re-encode faithfully, is
    // not echoed (QDCOUNT 0): only plain names are written back.
    const echo = q !== undefined && isPlainName(q.labels)
    const packet: dnsPacket.Packet = {
      type: 'response',
      id,
      flags: responseFlags(
        queryFlags,
        reply.rcode & 0xf,
        !withAnswers && reply.outcome === 'answered',
      ),
      // The real type and class are patched in below: dns-packet cannot encode every number.
      questions: echo ? [{ name: reply.name, type: 'A', class: 'IN' }] : [],
      answers:
        withAnswers && reply.outcome === 'answered'
          ? [
              {
                type: 'A',
                name: reply.name,
                class: 'IN',
                ttl: this.ttl,
                data: this.opts.answerAddress,
              },
            ]
          : [],
      additionals: reply.edns
        ? [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: ADVERTISED_UDP_PAYLOAD,
              extendedRcode: reply.rcode >> 4,
              ednsVersion: 0,
              flags: reply.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0,
              flag_do: reply.edns.dnssecOk,
              options: [],
            },
          ]
        : [],
    }
    const out = dnsPacket.encode(packet)
    if (echo) {
      out.writeUInt16BE(q.qtype, 12 + q.wireNameLength)
      out.writeUInt16BE(q.qclass, 14 + q.wireNameLength)
    }
    return out
  }

  private emit(event: DnsQueryEvent<D>): void {
    if (!this.opts.onQuery) return
    try {
      this.opts.onQuery(event)
    } catch {
      // A logging hook must not turn into a way to kill the server.
    }
  }
}

/**
 * EDNS (RFC 6891): at most one OPT record, owned by the root. A valid one is
 * answered with an OPT record of our own, whatever the rcode.
 */
function readEdns(decoded: dnsPacket.DecodedPacket | undefined): {
  edns?: QueryEdns
  badOpt: boolean
} {
  if (!decoded) return { badOpt: false }
  const opts = (decoded.additionals ?? []).filter((a) => a.type === 'OPT')
  const opt = opts[0] as dnsPacket.OptAnswer | undefined
  if (opts.length > 1 || (opt && opt.name !== '.')) return { badOpt: true }
  if (!opt) return { badOpt: false }
  const edns = {
    udpPayloadSize: opt.udpPayloadSize,
    version: opt.ednsVersion,
    dnssecOk: opt.flag_do,
  }
  return { edns, badOpt: false }
}

function formerr<D>(name: string, type: string): Reply<D> {
  return { rcode: RCODE_FORMERR, outcome: 'formerr', name, type }
}

function responseFlags(queryFlags: number, rcode4: number, truncated: boolean): number {
  const opcode = queryFlags & 0x7800
  return FLAG_QR | opcode | FLAG_AA | (queryFlags & FLAG_RD) | (truncated ? FLAG_TC : 0) | rcode4
}

function headerOnly(id: number, queryFlags: number, rcode: number, truncated: boolean): Buffer {
  const out = Buffer.alloc(12)
  out.writeUInt16BE(id, 0)
  out.writeUInt16BE(responseFlags(queryFlags, rcode & 0xf, truncated), 2)
  return out
}

/**
 * Reads the first question straight from the wire, keeping labels as bytes. Compression
 * pointers are followed only backwards (as dns-packet does), so a loop cannot occur; the
 * hop count is bounded anyway.
 */
function readQuestion(msg: Buffer): RawQuestion {
  const labels: Buffer[] = []
  let offset = 12
  let end = -1
  let total = 0
  let limit = offset
  for (let hops = 0; ; hops++) {
    if (hops > 255 || offset >= msg.length) throw new Error('bad name')
    const len = msg[offset]!
    if (len === 0) {
      if (end < 0) end = offset + 1
      break
    }
    if ((len & 0xc0) === 0xc0) {
      if (offset + 1 >= msg.length) throw new Error('bad name')
      const target = msg.readUInt16BE(offset) & 0x3fff
      if (target >= limit) throw new Error('bad pointer')
      if (end < 0) end = offset + 2
      offset = target
      limit = target
      continue
    }
    if ((len & 0xc0) !== 0) throw new Error('bad label')
    if (offset + 1 + len > msg.length) throw new Error('bad name')
    total += len + 1
    if (total > 254) throw new Error('name too long')
    labels.push(msg.subarray(offset + 1, offset + 1 + len))
    offset += 1 + len
  }
  if (end + 4 > msg.length) throw new Error('short question')
  const wireNameLength = labels.reduce((n, l) => n + l.length + 1, 1)
  return {
    labels,
    wireNameLength,
    qtype: msg.readUInt16BE(end),
    qclass: msg.readUInt16BE(end + 2),
  }
}

function isPlainByte(b: number): boolean {
  return b > 0x20 && b < 0x7f && b !== 0x2e && b !== 0x5c
}

function isPlainName(labels: Buffer[]): boolean {
  return labels.every((l) => l.every(isPlainByte))
}

/** RFC 1035 §5.1 presentation form; identical to the raw name for plain names. */
function presentationName(labels: Buffer[]): string {
  if (labels.length === 0) return '.'
  return labels
    .map((label) => {
      let s = ''
      for (const b of label) {
        if (isPlainByte(b)) s += String.fromCharCode(b)
        else if (b === 0x2e || b === 0x5c) s += '\\' + String.fromCharCode(b)
        else s += '\\' + String(b).padStart(3, '0')
      }
      return s
    })
    .join('.')
}

/** Mnemonic for a question type; RFC 3597 `TYPE<n>` for the rest (dns-packet says `UNKNOWN_<n>`). */
function typeName(qtype: number): string {
  return TYPE_NAMES[qtype] ?? `TYPE${qtype}`
}

const TYPE_NAMES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  13: 'HINFO',
  15: 'MX',
  16: 'TXT',
  17: 'RP',
  18: 'AFSDB',
  24: 'SIG',
  25: 'KEY',
  28: 'AAAA',
  29: 'LOC',
  33: 'SRV',
  35: 'NAPTR',
  36: 'KX',
  37: 'CERT',
  39: 'DNAME',
  41: 'OPT',
  42: 'APL',
  43: 'DS',
  44: 'SSHFP',
  45: 'IPSECKEY',
  46: 'RRSIG',
  47: 'NSEC',
  48: 'DNSKEY',
  49: 'DHCID',
  50: 'NSEC3',
  51: 'NSEC3PARAM',
  52: 'TLSA',
  55: 'HIP',
  59: 'CDS',
  60: 'CDNSKEY',
  64: 'SVCB',
  65: 'HTTPS',
  99: 'SPF',
  249: 'TKEY',
  250: 'TSIG',
  251: 'IXFR',
  252: 'AXFR',
  255: 'ANY',
  256: 'URI',
  257: 'CAA',
}
