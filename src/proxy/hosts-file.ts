// The hosts file (/etc/hosts), read the way the system resolver reads it: a
// name in it resolves to the addresses listed for it, without asking DNS.
// This is how Docker's extra_hosts (and the runner's proxy extra hosts) reach
// the proxy. The file is read again when it changes, checked at most once a
// second.

import { readFileSync, statSync } from 'node:fs'
import { tryCanonicalHost } from '../policy/index.js'

const CHECK_EVERY_MS = 1000

/** name → addresses, in file order. */
export function parseHostsFile(text: string): Map<string, string[]> {
  const names = new Map<string, string[]>()
  for (const raw of text.split('\n')) {
    const fields = (raw.split('#')[0] ?? '').trim().split(/\s+/)
    const address = tryCanonicalHost(fields[0] ?? '')
    if (address?.kind !== 'ip') continue
    for (const field of fields.slice(1)) {
      const name = tryCanonicalHost(field)
      if (name?.kind !== 'name') continue
      const list = names.get(name.name) ?? []
      if (!list.includes(address.text)) list.push(address.text)
      names.set(name.name, list)
    }
  }
  return names
}

export class HostsFile {
  private names = new Map<string, string[]>()
  /** The file's modification time when it was read; -1 when it could not be. */
  private readMtimeMs = Number.NaN
  private checkedAt = Number.NEGATIVE_INFINITY

  constructor(
    private readonly path: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The addresses the file lists for a canonical name, or undefined. */
  lookup(name: string): string[] | undefined {
    this.refresh()
    return this.names.get(name)
  }

  private refresh(): void {
    const now = this.now()
    if (now - this.checkedAt < CHECK_EVERY_MS) return
    this.checkedAt = now
    let mtimeMs: number
    try {
      mtimeMs = statSync(this.path).mtimeMs
    } catch {
      mtimeMs = -1
    }
    if (mtimeMs === this.readMtimeMs) return
    this.readMtimeMs = mtimeMs
    try {
      this.names = mtimeMs < 0 ? new Map() : parseHostsFile(readFileSync(this.path, 'utf8'))
    } catch {
      this.names = new Map()
    }
  }
}
