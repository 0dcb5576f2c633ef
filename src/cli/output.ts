// Output helpers: aligned tables for people, JSON for programs.

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** Left-aligned columns; the last column is not padded. */
export function formatTable(
  header: readonly string[] | null,
  rows: readonly (readonly string[])[],
): string {
  const all = header ? [header, ...rows] : rows
  const widths: number[] = []
  for (const row of all)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export function printTable(
  header: readonly string[] | null,
  rows: readonly (readonly string[])[],
): void {
  process.stdout.write(`${formatTable(header, rows)}\n`)
}
