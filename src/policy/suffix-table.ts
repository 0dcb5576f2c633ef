// Values keyed by domain suffix (`example.com` for `*.example.com`), looked up
// for every label-boundary suffix of a name in one right-to-left pass, without
// allocating substrings: a rolling hash of the suffix read backwards selects
// the candidates, and a plain comparison confirms them. The cost depends on
// the name's length, not on the number of suffixes stored.

// Kept within 30 bits so the hash stays a small integer in V8 (a larger value
// would be boxed as a heap number on every step and every map lookup).
function step(hash: number, code: number): number {
  return (Math.imul(hash, 31) + code) & 0x3fffffff
}

/** The hash `longestMatch` computes for a suffix: its characters from last to first. */
function suffixHash(suffix: string): number {
  let hash = 0
  for (let i = suffix.length - 1; i >= 0; i--) hash = step(hash, suffix.charCodeAt(i))
  return hash
}

export class SuffixTable<T> {
  private readonly byHash = new Map<number, { suffix: string; values: T[] }[]>()
  private count = 0

  add(suffix: string, value: T): void {
    const hash = suffixHash(suffix)
    let bucket = this.byHash.get(hash)
    if (!bucket) {
      bucket = []
      this.byHash.set(hash, bucket)
    }
    const entry = bucket.find((e) => e.suffix === suffix)
    if (entry) entry.values.push(value)
    else bucket.push({ suffix, values: [value] })
    this.count++
  }

  get size(): number {
    return this.count
  }

  /** Values stored for exactly this suffix. */
  get(suffix: string): readonly T[] | undefined {
    return this.byHash.get(suffixHash(suffix))?.find((e) => e.suffix === suffix)?.values
  }

  /**
   * Among the suffixes of `name` that follow a dot (for `a.b.example.com`:
   * `b.example.com`, `example.com`, `com`), the values of the longest one for
   * which `pick` returns something; that something is returned.
   */
  longestMatch<R>(name: string, pick: (values: readonly T[]) => R | undefined): R | undefined {
    if (this.count === 0) return undefined
    let best: R | undefined
    let hash = 0
    for (let i = name.length - 1; i > 0; i--) {
      hash = step(hash, name.charCodeAt(i))
      if (name.charCodeAt(i - 1) !== 46 /* . */) continue
      const bucket = this.byHash.get(hash)
      if (!bucket) continue
      for (const entry of bucket) {
        if (entry.suffix.length !== name.length - i || !name.startsWith(entry.suffix, i)) continue
        const picked = pick(entry.values)
        if (picked !== undefined) best = picked
      }
    }
    return best
  }
}
