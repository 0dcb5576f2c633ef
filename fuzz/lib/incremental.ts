// The property every incremental sniffer promises: the caller passes everything
// received so far, the answer is `incomplete` until enough bytes are there, and
// a verdict, once reached, does not change as more bytes arrive: an `ok` stays
// the same `ok`, an `invalid` stays `invalid` (its reason may name another of
// the input's problems, depending on how much of it was there).

import { same } from './property.js'

/** What must not change once reached: all of an `ok`, only the status of an `invalid`. */
function verdict<R extends { status: string }>(result: R): unknown {
  return result.status === 'invalid' ? { status: 'invalid' } : result
}

/** A status-returning parser over "everything received so far". */
export type IncrementalParser<R extends { status: string }> = (data: Buffer) => R

/**
 * Checks `full = parse(data)` against shorter and longer inputs: every prefix
 * either is still `incomplete` or already gives the same verdict, and bytes
 * appended after a verdict change nothing. Prefixes are cut where `cuts` say
 * (fractions of the input, so the checks stay linear in its length).
 */
export function checkIncremental<R extends { status: string }>(
  name: string,
  parse: IncrementalParser<R>,
  data: Buffer,
  full: R,
  cuts: readonly number[] = [0, 0.25, 0.5, 0.75],
): void {
  for (const fraction of cuts) {
    const end = Math.min(data.length - 1, Math.floor(data.length * fraction))
    if (end < 0) continue
    const prefix = parse(data.subarray(0, end))
    if (prefix.status !== 'incomplete')
      same(
        verdict(prefix),
        verdict(full),
        `${name}: the verdict on the first ${end} bytes changed when more arrived`,
      )
  }
  if (data.length > 0) {
    const last = parse(data.subarray(0, data.length - 1))
    if (last.status !== 'incomplete')
      same(verdict(last), verdict(full), `${name}: the verdict changed when the last byte arrived`)
  }
  if (full.status !== 'incomplete') {
    const longer = parse(Buffer.concat([data, data, Buffer.from([0x0d, 0x0a, 0x00, 0xff])]))
    same(verdict(longer), verdict(full), `${name}: bytes after a verdict changed it`)
  }
}
