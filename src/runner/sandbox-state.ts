// What the runner keeps per sandbox on the egress side, in its state directory
// (never in labels, env or anything the sandbox can read): the sandbox's CA,
// key mode 0600, and the placeholders its secrets were given. After a restart
// of the runner, or of a proxy, the proxy is sent both again from here.
//
//   <state dir>/sandboxes/<id>/ca.pem, ca.key, secrets.json

import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readCaFiles, writeCaFiles } from '../tls/ca-files.js'
import type { CaMaterial } from '../tls/ca.js'

export interface SecretPlaceholder {
  readonly name: string
  readonly placeholder: string
}

export interface SandboxState {
  readonly ca: CaMaterial
  readonly secrets: readonly SecretPlaceholder[]
}

const SECRETS_FILE = 'secrets.json'

export class SandboxStateStore {
  constructor(private readonly root: string) {}

  /** The store of a runner whose state directory (ISORUN_STATE_DIR) is `stateDir`. */
  static of(stateDir: string): SandboxStateStore {
    return new SandboxStateStore(join(stateDir, 'sandboxes'))
  }

  /** The directory of a sandbox id the runner makes (hex); undefined for anything else. */
  private dir(id: string): string | undefined {
    return /^[0-9a-f]{1,64}$/.test(id) ? join(this.root, id) : undefined
  }

  save(id: string, state: SandboxState): void {
    const dir = this.dir(id)
    if (!dir) throw new Error(`"${id}" is not a sandbox id`)
    writeCaFiles(dir, state.ca)
    writeFileSync(join(dir, SECRETS_FILE), `${JSON.stringify(state.secrets)}\n`, { mode: 0o600 })
  }

  /** The state of a sandbox, or undefined when none was kept (or it cannot be read). */
  load(id: string): SandboxState | undefined {
    const dir = this.dir(id)
    const ca = dir ? readCaFiles(dir) : undefined
    if (!ca) return undefined
    let secrets: SecretPlaceholder[] = []
    try {
      secrets = JSON.parse(
        readFileSync(join(dir as string, SECRETS_FILE), 'utf8'),
      ) as SecretPlaceholder[]
    } catch {
      return undefined
    }
    return { ca, secrets }
  }

  /** The sandbox ids with kept state (other names in the directory are not ours and ignored). */
  ids(): string[] {
    let names: string[]
    try {
      names = readdirSync(this.root)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [] // nothing kept yet
      throw err
    }
    return names.filter((name) => this.dir(name) !== undefined)
  }

  remove(id: string): void {
    const dir = this.dir(id)
    if (dir) rmSync(dir, { recursive: true, force: true })
  }
}
