// Small measurement helpers shared by the benchmark scripts.

export interface Timing {
  readonly opsPerSec: number
  readonly ops: number
  readonly seconds: number
}

/**
 * Runs `round` (which returns how many operations it did) repeatedly for about
 * `budgetMs`, after one warm-up round, and reports operations per second.
 */
export function timeIt(round: () => number, budgetMs: number): Timing {
  round() // warm-up: JIT, caches
  let ops = 0
  const start = process.hrtime.bigint()
  let elapsedNs = 0n
  while (elapsedNs < BigInt(budgetMs) * 1_000_000n) {
    ops += round()
    elapsedNs = process.hrtime.bigint() - start
  }
  const seconds = Number(elapsedNs) / 1e9
  return { opsPerSec: ops / seconds, ops, seconds }
}

export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n)
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US')
  return n.toFixed(2)
}

export function printResults(
  title: string,
  rows: readonly { label: string; value: number; unit: string }[],
): void {
  const width = Math.max(...rows.map((r) => r.label.length))
  const lines = [
    title,
    '-'.repeat(title.length),
    ...rows.map((r) => `${r.label.padEnd(width)}  ${formatNumber(r.value).padStart(14)} ${r.unit}`),
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

/** Percentile of a sorted-on-demand sample (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] as number
}
