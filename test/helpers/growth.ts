// How a function's cost grows with its input, measured so that the speed of
// the machine (or how busy it is) cancels out: the CPU time of the same work
// on a small and a large input, in the same process, a moment apart. A
// linear cost grows by the size factor, a quadratic one by its square; tests
// assert the ratio, never a duration.

/** CPU time (user + system, µs) of one call, the least of `reps` calls: preemption only adds. */
function cpuMicros(fn: () => void, reps: number): number {
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < reps; i++) {
    const before = process.cpuUsage()
    fn()
    const used = process.cpuUsage(before)
    best = Math.min(best, used.user + used.system)
  }
  return best
}

/**
 * How many times more CPU `work(large)` takes than `work(small)`. With
 * large = 4 × small, about 4 means linear and about 16 quadratic. Sizes should make
 * the small call take a few milliseconds, so that clock granularity does not matter.
 */
export function costGrowth(
  work: (size: number) => void,
  small: number,
  large: number,
  reps = 7,
): number {
  work(large) // warm-up: the JIT compiles on the large input too
  const a = cpuMicros(() => work(small), reps)
  const b = cpuMicros(() => work(large), reps)
  return b / Math.max(a, 1)
}
