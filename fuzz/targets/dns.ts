// Fuzz target: the sandbox's DNS server (src/proxy/dns-server.ts), on real
// UDP and TCP sockets on loopback. Each input is one DNS message, sent as a
// datagram and as a length-prefixed frame on a kept-open TCP connection.
//
// Properties: the server never crashes and answers every message that has a
// full header and is not itself a response (and only those); every answer is a
// well-formed DNS response to that query (same ID, QR set, opcode and RD
// echoed, a known rcode, at most 512 bytes over UDP); it answers with records
// only for an A question whose name the policy allowed, with the configured
// address, and refuses every other type whatever the policy says; the policy
// is asked at most once per message, only about questions of class IN with
// plain host names, and about the same name an independent decoder
// (dns-packet) reads from the question; the message's one event carries the
// decision that was asked for, and none when none was; UDP and TCP give the
// same answer.

import dgram from 'node:dgram'
import net from 'node:net'
import * as dnsPacket from 'dns-packet'
import {
  startDnsServer,
  type DnsQueryEvent,
  type DnsServerHandle,
} from '../../src/proxy/dns-server.js'
import { within } from '../lib/loopback.js'
import { property, PropertyViolation, same } from '../lib/property.js'

const ANSWER_ADDRESS = '127.0.0.53'
const KNOWN_RCODES = new Set([0, 1, 4, 5])

interface Asked {
  readonly name: string
  readonly type: string
  readonly allow: boolean
}

/** A stand-in policy with both answers: allows names of an even length and *.allowed.test. */
function policy(name: string): boolean {
  return name.length % 2 === 0 || name.toLowerCase().endsWith('.allowed.test')
}

let asked: Asked[] = []
let events: DnsQueryEvent[] = []
let server: DnsServerHandle | undefined
let udp: dgram.Socket | undefined
let tcp: { socket: net.Socket; frames: Buffer[]; buffered: Buffer; waiter?: () => void } | undefined

async function setUp(): Promise<void> {
  server ??= await startDnsServer({
    udp: { host: '127.0.0.1', port: 0 },
    tcp: { host: '127.0.0.1', port: 0 },
    answerAddress: ANSWER_ADDRESS,
    decide: (name, type) => {
      const allow = policy(name)
      asked.push({ name, type, allow })
      return { allow }
    },
    onQuery: (event) => events.push(event),
  })
  if (!udp) {
    const socket = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
    udp = socket
  }
  if (!tcp || tcp.socket.destroyed) {
    const socket = net.connect(server.tcpAddress!.port, '127.0.0.1')
    await new Promise<void>((resolve, reject) =>
      socket.once('connect', resolve).once('error', reject),
    )
    const conn: NonNullable<typeof tcp> = { socket, frames: [], buffered: Buffer.alloc(0) }
    socket.on('data', (chunk: Buffer) => {
      conn.buffered = Buffer.concat([conn.buffered, chunk])
      while (
        conn.buffered.length >= 2 &&
        conn.buffered.length >= 2 + conn.buffered.readUInt16BE(0)
      ) {
        conn.frames.push(conn.buffered.subarray(2, 2 + conn.buffered.readUInt16BE(0)))
        conn.buffered = conn.buffered.subarray(2 + conn.buffered.readUInt16BE(0))
      }
      conn.waiter?.()
    })
    socket.on('close', () => conn.waiter?.())
    socket.on('error', () => undefined)
    tcp = conn
  }
}

function askUdp(message: Buffer): Promise<Buffer> {
  const socket = udp!
  return within(
    'UDP: no answer',
    new Promise((resolve) => {
      socket.once('message', (msg) => resolve(msg))
      socket.send(message, server!.udpAddress!.port, '127.0.0.1')
    }),
  )
}

function askTcp(message: Buffer): Promise<Buffer | undefined> {
  const conn = tcp!
  const frame = Buffer.alloc(2 + message.length)
  frame.writeUInt16BE(message.length)
  message.copy(frame, 2)
  return within(
    'TCP: no answer',
    new Promise((resolve) => {
      conn.waiter = () => {
        if (conn.frames.length > 0) resolve(conn.frames.shift())
        else if (conn.socket.destroyed) resolve(undefined)
      }
      conn.socket.write(frame)
    }),
  )
}

/** The single question of class IN as dns-packet reads it, when there is one. */
function independentQuestion(message: Buffer): { name: string; type: string } | undefined {
  try {
    const packet = dnsPacket.decode(message)
    const questions = packet.questions ?? []
    if (questions.length !== 1 || message.readUInt16BE(4) !== 1) return undefined
    const q = questions[0]!
    if (q.class !== 'IN') return undefined
    return { name: q.name, type: q.type }
  } catch {
    return undefined
  }
}

function checkResponse(query: Buffer, response: Buffer, transport: string): void {
  property(response.length >= 12, `${transport}: an answer shorter than a header`, response)
  same(response.readUInt16BE(0), query.readUInt16BE(0), `${transport}: the answer has another ID`)
  const flags = response.readUInt16BE(2)
  const queryFlags = query.readUInt16BE(2)
  property((flags & 0x8000) !== 0, `${transport}: QR is not set`, flags)
  same(flags & 0x7800, queryFlags & 0x7800, `${transport}: the opcode is not echoed`)
  same(flags & 0x0100, queryFlags & 0x0100, `${transport}: RD is not echoed`)
  property(KNOWN_RCODES.has(flags & 0xf), `${transport}: an unexpected rcode`, flags & 0xf)
  if (transport === 'UDP')
    property(response.length <= 512, 'a UDP answer over 512 bytes', response.length)
  let decoded: dnsPacket.DecodedPacket
  try {
    decoded = dnsPacket.decode(response)
  } catch (err) {
    throw new PropertyViolation(`${transport}: the answer does not decode: ${String(err)}`)
  }
  const answers = decoded.answers ?? []
  if (answers.length === 0) return
  property(
    answers.length === 1 && (flags & 0xf) === 0,
    `${transport}: records in a refusal, or several`,
    answers,
  )
  const answer = answers[0]!
  property(
    answer.type === 'A' && answer.data === ANSWER_ADDRESS,
    `${transport}: not our A record`,
    answer,
  )
  const allowed = asked.find((a) => a.allow && a.name.toLowerCase() === answer.name.toLowerCase())
  property(
    allowed !== undefined,
    `${transport}: an answer for a name the policy did not allow`,
    answer.name,
    asked,
  )
}

export async function fuzz(data: Buffer): Promise<void> {
  await setUp()
  const message = data.subarray(0, 4096)
  const droppable = message.length < 12 || (message.readUInt16BE(2) & 0x8000) !== 0
  asked = []
  events = []
  if (droppable) return

  const overUdp = await askUdp(message)
  checkResponse(message, overUdp, 'UDP')
  property(asked.length <= 1, 'the policy was asked more than once for one message', asked)
  for (const a of asked) {
    if (a.type !== 'A' && a.type !== 'AAAA')
      same(overUdp.readUInt16BE(2) & 0xf, 5, `a ${a.type} question was not refused`)
    property(
      /^[\x21-\x2d\x2f-\x5b\x5d-\x7e]+(\.[\x21-\x2d\x2f-\x5b\x5d-\x7e]+)*$/.test(a.name),
      'the policy was asked about a name that is not plain',
      a,
    )
    const independent = independentQuestion(message)
    if (independent)
      same(a.name, independent.name, 'the server and dns-packet read different question names')
  }
  property(events.length === 1, 'not one query event per answer', events)
  same(
    events[0]?.decision,
    asked[0] && { allow: asked[0].allow },
    'the event does not carry the decision that was asked for',
  )

  const udpAsked = asked
  asked = []
  const overTcp = await askTcp(message)
  if (overTcp === undefined) {
    property(message.length > 4096, 'the TCP connection closed on a message within the size limit')
    return
  }
  checkResponse(message, overTcp, 'TCP')
  same(overTcp, overUdp, 'UDP and TCP gave different answers')
  same(asked, udpAsked, 'UDP and TCP asked the policy different questions')
}
