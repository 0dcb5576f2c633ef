// The profile catalogue: the built-in profiles plus operator directories,
// loaded from YAML, resolved, and kept live. An operator profile with the same
// name as a built-in one replaces it (and every profile that includes it sees
// the replacement). A file that breaks keeps its last good version and the
// problem is reported; it never takes the catalogue down.

import { EventEmitter } from 'node:events'
import { existsSync, readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Mode } from '../policy/index.js'
import { parseProfile, ProfileError, type ProfileDefinition } from './parse-profile.js'
import { resolveProfile, type ResolvedProfile } from './resolve.js'

export interface ProfileSummary {
  readonly name: string
  readonly description: string
  readonly mode: Mode
}

export interface ProfileProblem {
  readonly file: string
  /** One line: `file:line:column: field: what is wrong`. */
  readonly message: string
  /** True when an earlier good version of the profile is still in use. */
  readonly keptLastGood: boolean
}

export interface CatalogueOptions {
  /** Directory of built-in profiles; null for none. Default: the package's `profiles/`. */
  readonly builtinDir?: string | null
  /** Operator directories; later ones override earlier ones and the built-ins. */
  readonly dirs?: readonly string[]
}

export interface CatalogueChange {
  /** Profiles whose resolved rules changed, appeared or disappeared. */
  readonly changed: readonly string[]
  readonly removed: readonly string[]
}

/** Finds the `profiles/` directory that ships with this package. */
export function builtinProfilesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && existsSync(join(dir, 'profiles'))) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === '@isorun/server')
          return join(dir, 'profiles')
      } catch {
        // not our package.json; keep walking up
      }
    }
    dir = dirname(dir)
  }
  throw new Error('cannot find the built-in profiles directory next to the @isorun/server package')
}

interface FileState {
  readonly text: string
  readonly definition: ProfileDefinition | undefined
  readonly problem: string | undefined
}

function signature(profile: ResolvedProfile): string {
  return JSON.stringify([
    profile.mode,
    profile.description,
    profile.allow,
    profile.deny,
    profile.endpoints,
  ])
}

export class ProfileCatalogue extends EventEmitter<{ change: [CatalogueChange] }> {
  readonly dirs: readonly string[]
  private files = new Map<string, FileState>()
  private resolved = new Map<string, ResolvedProfile>()
  private resolveProblems = new Map<string, string>()
  private watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined
  private pollTimer: NodeJS.Timeout | undefined

  constructor(options: CatalogueOptions = {}) {
    super()
    const builtin = options.builtinDir === undefined ? builtinProfilesDir() : options.builtinDir
    this.dirs = [...(builtin ? [builtin] : []), ...(options.dirs ?? [])].map((d) => resolve(d))
    this.reload()
  }

  list(): ProfileSummary[] {
    return [...this.resolved.values()]
      .map(({ name, description, mode }) => ({ name, description, mode }))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  names(): string[] {
    return this.list().map((p) => p.name)
  }

  get(name: string): ResolvedProfile | undefined {
    return this.resolved.get(name)
  }

  /** Definitions by name, later directories overriding earlier ones. */
  private definitions(): Map<string, ProfileDefinition> {
    const byName = new Map<string, ProfileDefinition>()
    for (const state of this.files.values())
      if (state.definition) byName.set(state.definition.name, state.definition)
    return byName
  }

  problems(): ProfileProblem[] {
    const out: ProfileProblem[] = []
    for (const [file, state] of this.files) {
      if (state.problem)
        out.push({ file, message: state.problem, keptLastGood: state.definition !== undefined })
    }
    for (const [name, message] of this.resolveProblems) {
      out.push({
        file: this.definitions().get(name)?.file ?? name,
        message,
        keptLastGood: this.resolved.has(name),
      })
    }
    return out
  }

  /** Re-reads every directory. Returns (and emits) what changed. */
  reload(): CatalogueChange {
    const seen = new Set<string>()
    const next = new Map<string, FileState>()
    for (const dir of this.dirs) {
      for (const file of listProfileFiles(dir)) {
        seen.add(file)
        next.set(file, this.readFile(file))
      }
    }
    this.files = next

    const definitions = this.definitions()
    const previous = this.resolved
    const resolved = new Map<string, ResolvedProfile>()
    const problems = new Map<string, string>()
    for (const name of definitions.keys()) {
      try {
        resolved.set(
          name,
          resolveProfile(name, (n) => definitions.get(n)),
        )
      } catch (err) {
        problems.set(name, err instanceof Error ? err.message : String(err))
        const lastGood = previous.get(name)
        if (lastGood) resolved.set(name, lastGood)
      }
    }
    this.resolved = resolved
    this.resolveProblems = problems

    const changed: string[] = []
    for (const [name, profile] of resolved) {
      const before = previous.get(name)
      if (!before || signature(before) !== signature(profile)) changed.push(name)
    }
    const removed = [...previous.keys()].filter((name) => !resolved.has(name))
    const change = { changed, removed }
    if (changed.length > 0 || removed.length > 0) this.emit('change', change)
    return change
  }

  private readFile(file: string): FileState {
    const before = this.files.get(file)
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      const message = `${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`
      return { text: '', definition: before?.definition, problem: message }
    }
    if (before && before.text === text) return before
    try {
      return { text, definition: parseProfile(text, file), problem: undefined }
    } catch (err) {
      const message =
        err instanceof ProfileError
          ? err.message
          : `${file}: ${err instanceof Error ? err.message : String(err)}`
      return { text, definition: before?.definition, problem: message }
    }
  }

  /**
   * Watches the directories and reloads shortly after a change. fs.watch can miss
   * events (editors that replace files, some bind mounts), so a slow stat-based
   * poll backs it up.
   */
  watch(options: { debounceMs?: number; pollMs?: number } = {}): void {
    if (this.watchers.length > 0 || this.pollTimer) return
    const debounceMs = options.debounceMs ?? 150
    const schedule = (): void => {
      if (this.timer) clearTimeout(this.timer)
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.reload()
      }, debounceMs)
      this.timer.unref()
    }
    for (const dir of this.dirs) {
      try {
        const watcher = watch(dir, { persistent: false }, schedule)
        watcher.on('error', () => undefined) // the poll below still covers this directory
        this.watchers.push(watcher)
      } catch {
        // directory missing or not watchable: the poll picks it up if it appears
      }
    }
    let stamp = this.stamp()
    this.pollTimer = setInterval(() => {
      const now = this.stamp()
      if (now !== stamp) {
        stamp = now
        schedule()
      }
    }, options.pollMs ?? 2000)
    this.pollTimer.unref()
  }

  /** Names, sizes and modification times of every profile file: cheap change detection. */
  private stamp(): string {
    const parts: string[] = []
    for (const dir of this.dirs) {
      for (const file of listProfileFiles(dir)) {
        try {
          const s = statSync(file)
          parts.push(`${file}:${s.size}:${s.mtimeMs}`)
        } catch {
          parts.push(`${file}:gone`)
        }
      }
    }
    return parts.join('|')
  }

  close(): void {
    for (const w of this.watchers) w.close()
    this.watchers = []
    if (this.timer) clearTimeout(this.timer)
    if (this.pollTimer) clearInterval(this.pollTimer)
    this.timer = undefined
    this.pollTimer = undefined
  }
}

function listProfileFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith('.'))
      .sort()
      .map((f) => join(dir, f))
  } catch {
    return []
  }
}
