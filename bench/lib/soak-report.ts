// The soak benchmark's results and how they are shown: a table of figures and
// a PASS/FAIL line per check for each scenario, or the same as JSON.

export type Figure = readonly [label: string, value: string | number]

export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

export interface ScenarioResult {
  readonly name: string
  readonly title: string
  readonly figures: readonly Figure[]
  readonly checks: readonly Check[]
}

export function check(name: string, ok: boolean, detail: string): Check {
  return { name, ok, detail }
}

const startedAt = Date.now()

/** A progress line on stderr, with the time since the bench started. */
export function progress(text: string): void {
  const s = ((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)
  process.stderr.write(`[soak ${s} s] ${text}\n`)
}

export function renderReport(
  header: readonly string[],
  results: readonly ScenarioResult[],
): string {
  const out: string[] = [...header, '']
  for (const r of results) {
    const title = `${r.name} — ${r.title}`
    out.push(title, '-'.repeat(Math.min(title.length, 100)))
    const width = Math.max(...r.figures.map(([label]) => label.length), 10)
    for (const [label, value] of r.figures)
      out.push(
        `  ${label.padEnd(width)}  ${typeof value === 'number' ? value.toLocaleString('en-US') : value}`,
      )
    for (const c of r.checks) out.push(`  ${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`)
    out.push('')
  }
  const failed = results.flatMap((r) =>
    r.checks.filter((c) => !c.ok).map((c) => `${r.name}: ${c.name}`),
  )
  out.push(
    failed.length === 0
      ? 'all checks passed'
      : `${failed.length} check(s) failed:\n  ${failed.join('\n  ')}`,
  )
  return `${out.join('\n')}\n`
}
