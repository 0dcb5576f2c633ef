// Fuzz target: the profile loader (src/profiles/parse-profile.ts, resolve.ts).
// The input is profile YAML; a line `---` splits it into several profiles that
// can include each other and the built-in ones.
//
// Properties: parseProfile returns a definition or throws ProfileError (with a
// line and column in the file), nothing else; a definition written back as YAML
// parses to the same definition; resolving includes gives a profile or a
// ProfileError; and a resolved profile always compiles into a policy (what
// loads is what the proxy can enforce).

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { compilePolicy } from '../../src/policy/index.js'
import {
  builtinProfilesDir,
  parseProfile,
  policySpecOf,
  ProfileError,
  resolveProfile,
  type ProfileDefinition,
} from '../../src/profiles/index.js'
import { onlyThrows, property, PropertyViolation, same, wasRefused } from '../lib/property.js'

const BUILTIN = new Map<string, ProfileDefinition>(
  readdirSync(builtinProfilesDir())
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => {
      const def = parseProfile(readFileSync(join(builtinProfilesDir(), f), 'utf8'), f)
      return [def.name, def]
    }),
)

/** The name a document claims, so the file can be named after it (parseProfile checks they match). */
function claimedName(text: string): string {
  return /^name:[ \t]*["']?([a-z0-9-]{1,63})/m.exec(text)?.[1] ?? 'fuzz'
}

function parse(text: string, file: string): ProfileDefinition | { refused: Error } {
  return onlyThrows('parseProfile', [ProfileError], () => parseProfile(text, file))
}

/** The definition as YAML, the way an operator would write it. */
function writeBack(def: ProfileDefinition): string {
  const endpoints = Object.fromEntries(
    def.endpoints.map((e) => [
      e.host,
      e.rules.map((r) => ({ methods: [...r.methods], path: r.path, action: r.action })),
    ]),
  )
  return stringify({
    name: def.name,
    description: def.description,
    mode: def.mode,
    include: [...def.include],
    allow: [...def.allow],
    deny: [...def.deny],
    endpoints,
  })
}

function meaning(def: ProfileDefinition): unknown {
  const { includeAt: _at, file: _file, ...rest } = def
  return rest
}

export function fuzz(data: Buffer): void {
  const documents = data
    .toString('utf8')
    .split(/^---[ \t]*$/m)
    .slice(0, 4)
  const definitions = new Map(BUILTIN)
  for (const text of documents) {
    const file = `${claimedName(text)}.yaml`
    const def = parse(text, file)
    if (wasRefused(def)) {
      const err = def.refused as ProfileError
      property(err.line >= 1 && err.column >= 1, 'a ProfileError without a position', err.message)
      property(
        err.message.startsWith(`${file}:`),
        'a ProfileError that does not name the file',
        err.message,
      )
      continue
    }
    const again = parse(writeBack(def), file)
    property(
      !wasRefused(again),
      'a definition written back as YAML does not load',
      writeBack(def),
      again,
    )
    same(meaning(again), meaning(def), 'a definition written back as YAML loads differently')
    definitions.set(def.name, def)
  }
  for (const text of documents) {
    const name = claimedName(text)
    if (!definitions.has(name) || BUILTIN.get(name) === definitions.get(name)) continue
    const resolved = onlyThrows('resolveProfile', [ProfileError], () =>
      resolveProfile(name, (n) => definitions.get(n)),
    )
    if (wasRefused(resolved)) continue
    try {
      compilePolicy(policySpecOf(resolved))
    } catch (err) {
      throw new PropertyViolation(`a profile that loads does not compile: ${String(err)}`)
    }
  }
}
