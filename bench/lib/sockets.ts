// A process's TCP sockets and file descriptors, from /proc (Linux only), for
// the soak benchmark's leak checks: which sockets a process still holds after
// a load, in which state (CLOSE_WAIT: the peer closed and we never did), and
// whether data sits unread in them (a paused stream nobody resumes).

import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

/** TCP states as /proc/net/tcp numbers them. */
const STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
}

export interface TcpSocket {
  readonly localPort: number
  readonly remotePort: number
  readonly state: string
  /** Bytes received and not yet read by the process. */
  readonly unread: number
}

/** Every TCP socket of the machine's network namespace, by inode. */
function tcpTable(): Map<number, TcpSocket> {
  const table = new Map<number, TcpSocket>()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(file, 'latin1')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      // f[1] local addr:port, f[2] remote addr:port, f[3] state, f[4] tx_queue:rx_queue, f[9] inode
      const port = (field: string): number => parseInt(field.split(':').pop() as string, 16)
      const queues = (f[4] as string).split(':')
      table.set(Number(f[9]), {
        localPort: port(f[1] as string),
        remotePort: port(f[2] as string),
        state: STATES[f[3] as string] ?? f[3] ?? '?',
        unread: parseInt(queues[1] ?? '0', 16),
      })
    }
  }
  return table
}

/** The number of open file descriptors of a process. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/** The TCP sockets a process holds open. */
export function tcpSocketsOf(pid: number): TcpSocket[] {
  const inodes: number[] = []
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      continue // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target)
    if (m) inodes.push(Number(m[1]))
  }
  const table = tcpTable()
  return inodes.flatMap((inode) => {
    const s = table.get(inode)
    return s ? [s] : []
  })
}

export interface SocketSummary {
  /** Connections (not listeners), by state. */
  readonly states: Record<string, number>
  /** Connections whose remote port is one of `peers` (the upstreams, for the proxy). */
  readonly toPeers: number
  readonly closeWait: number
  /** Connections with unread received bytes. */
  readonly withUnread: number
}

export function summarizeSockets(
  sockets: readonly TcpSocket[],
  peers: readonly number[] = [],
): SocketSummary {
  const states: Record<string, number> = {}
  let toPeers = 0
  let closeWait = 0
  let withUnread = 0
  for (const s of sockets) {
    if (s.state === 'LISTEN') continue
    states[s.state] = (states[s.state] ?? 0) + 1
    if (peers.includes(s.remotePort)) toPeers++
    if (s.state === 'CLOSE_WAIT') closeWait++
    if (s.unread > 0) withUnread++
  }
  return { states, toPeers, closeWait, withUnread }
}

/** "ESTABLISHED 3, CLOSE_WAIT 1", or "none". */
export function formatStates(states: Record<string, number>): string {
  const parts = Object.entries(states).map(([k, v]) => `${k} ${v}`)
  return parts.length > 0 ? parts.join(', ') : 'none'
}
