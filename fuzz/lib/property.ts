// What a fuzz target reports when a property does not hold. The fuzzer treats
// any exception that escapes a target as a finding and saves the input, so a
// violated property is thrown as a PropertyViolation naming the property and
// the values that broke it.

import { inspect, isDeepStrictEqual } from 'node:util'

export class PropertyViolation extends Error {
  override readonly name = 'PropertyViolation'

  constructor(message: string) {
    super(message)
    // The fuzzer prints the message, then the stack without its first line: keep
    // the (multi-line) message out of the stack so it is not printed twice.
    const frames = (this.stack ?? '').split('\n').filter((line) => line.startsWith('    at '))
    this.stack = [`${this.name}: ${message.split('\n')[0]}`, ...frames].join('\n')
  }
}

function show(value: unknown): string {
  return inspect(value, { depth: 6, breakLength: 120, maxStringLength: 300 })
}

/** Throws a PropertyViolation saying `what` unless `ok`. */
export function property(ok: boolean, what: string, ...details: unknown[]): asserts ok {
  if (!ok) throw new PropertyViolation([what, ...details.map(show)].join('\n  '))
}

/** Throws a PropertyViolation unless the two values are deeply equal. */
export function same(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected))
    throw new PropertyViolation(
      `${what}\n  got:      ${show(actual)}\n  expected: ${show(expected)}`,
    )
}

type ErrorClass = abstract new (...args: never[]) => Error

/**
 * Runs `fn`: its value, or `{ refused: error }` when it threw one of the
 * `allowed` error types (the module's own). Anything else it throws (a
 * TypeError, a RangeError, a non-Error) is a PropertyViolation.
 */
export function onlyThrows<T>(
  what: string,
  allowed: readonly ErrorClass[],
  fn: () => T,
): T | { refused: Error } {
  try {
    return fn()
  } catch (err) {
    if (allowed.some((type) => err instanceof type)) return { refused: err as Error }
    throw new PropertyViolation(
      `${what} threw something other than ${allowed.map((t) => t.name).join(' or ')}: ${show(err)}`,
    )
  }
}

/** Narrows onlyThrows' answer. */
export function wasRefused<T>(result: T | { refused: Error }): result is { refused: Error } {
  return typeof result === 'object' && result !== null && 'refused' in result
}
