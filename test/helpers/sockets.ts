// This machine's TCP sockets from /proc/net/tcp and tcp6, for checks such as
// "no connection to the origin is left in CLOSE_WAIT" (a peer that closed
// while this side never read its FIN: a connection somebody forgot).

import { readFileSync } from 'node:fs'

/** Kernel TCP states by their /proc code. */
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
}

function read(path: string): TcpSocket[] {
  let text: string
  try {
    text = readFileSync(path, 'latin1')
  } catch {
    return []
  }
  return text
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length > 3)
    .map((f) => ({
      localPort: parseInt((f[1] as string).split(':')[1] as string, 16),
      remotePort: parseInt((f[2] as string).split(':')[1] as string, 16),
      state: STATES[f[3] as string] ?? (f[3] as string),
    }))
}

/** Sockets with `port` at either end, in `state` (e.g. CLOSE_WAIT). */
export function socketsInState(port: number, state: string): TcpSocket[] {
  return [...read('/proc/net/tcp'), ...read('/proc/net/tcp6')].filter(
    (s) => s.state === state && (s.localPort === port || s.remotePort === port),
  )
}
