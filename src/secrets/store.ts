// The proxy's secrets, and the one function that puts a value in place of its
// placeholder. The interception stage calls substituteSecrets() for each
// request it decrypted, with the request's host (the checked SNI) and headers.
//
// A placeholder is replaced only when all of these hold: the host is one the
// secret is bound to, the header is the secret's header, and the header's
// value has exactly the secret's form (the whole value, `Bearer <placeholder>`,
// or Basic credentials whose user or password is the placeholder). Anything
// else goes out as it is: a placeholder in a URL, a body, another header or
// inside other text reaches the server as the placeholder, never as the value.

import { parseRule, RuleIndex, tryCanonicalHost } from '../policy/index.js'
import type { BoundHosts } from '../policy/index.js'
import { publicBinding, type PublicSecretBinding, type SecretBinding } from './binding.js'

/** A header as it travels: name as sent (any case), value. Order and duplicates are kept. */
export type HeaderPair = readonly [name: string, value: string]

export interface Substitution {
  readonly headers: [string, string][]
  /** Names of the secrets whose values were put in (for the log: names only). */
  readonly used: readonly string[]
}

interface CompiledBinding {
  readonly binding: SecretBinding
  readonly hosts: RuleIndex
}

export class SecretStore implements BoundHosts {
  private readonly bindings: readonly CompiledBinding[]

  constructor(bindings: readonly SecretBinding[] = []) {
    this.bindings = bindings.map((binding) => ({
      binding,
      hosts: new RuleIndex(binding.hosts.map((h) => ({ ...parseRule(h), from: binding.name }))),
    }))
  }

  get size(): number {
    return this.bindings.length
  }

  private boundTo(host: string): CompiledBinding[] {
    if (this.bindings.length === 0) return []
    const canonical = tryCanonicalHost(host)
    if (canonical?.kind !== 'name') return []
    return this.bindings.filter((b) => b.hosts.matchName(canonical.name, undefined) !== undefined)
  }

  hasSecretFor(host: string): boolean {
    return this.boundTo(host).length > 0
  }

  substituteSecrets(host: string, headers: readonly HeaderPair[]): Substitution {
    const bound = this.boundTo(host)
    const out: [string, string][] = headers.map(([name, value]) => [name, value])
    if (bound.length === 0) return { headers: out, used: [] }
    const used = new Set<string>()
    for (const pair of out) {
      const lower = pair[0].toLowerCase()
      for (const { binding } of bound) {
        if (binding.header !== lower) continue
        const replaced = replaceInForm(binding, pair[1])
        if (replaced === undefined) continue
        pair[1] = replaced
        used.add(binding.name)
        break
      }
    }
    return { headers: out, used: [...used] }
  }

  /** Everything but the values, for GET /interception and logs. */
  describe(): PublicSecretBinding[] {
    return this.bindings.map((b) => publicBinding(b.binding))
  }

  /** Never serialise values by accident (a log line, an error body). */
  toJSON(): PublicSecretBinding[] {
    return this.describe()
  }
}

const BEARER = /^bearer[ \t]+([^ \t]+)[ \t]*$/i
const BASIC = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i

/** The header value with the secret in place of its placeholder, or undefined when it is not in the secret's form. */
function replaceInForm(binding: SecretBinding, value: string): string | undefined {
  const { placeholder, scheme } = binding
  switch (scheme) {
    case 'raw':
      return value.trim() === placeholder ? binding.value : undefined
    case 'bearer': {
      const token = BEARER.exec(value)?.[1]
      return token === placeholder ? `Bearer ${binding.value}` : undefined
    }
    case 'basic': {
      const encoded = BASIC.exec(value)?.[1]
      if (encoded === undefined) return undefined
      const decoded = Buffer.from(encoded, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 0) return undefined
      const user = decoded.slice(0, colon)
      const password = decoded.slice(colon + 1)
      let credentials: string
      if (password === placeholder) credentials = `${user}:${binding.value}`
      else if (user === placeholder) credentials = `${binding.value}:${password}`
      else return undefined
      return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`
    }
  }
}
