// Prometheus counters for the admin API's /metrics. Plain maps keyed by label
// values: the label sets are small and fixed (action × reason × protocol).

export class ProxyMetrics {
  private readonly decisions = new Map<string, number>()
  private readonly bytes = { up: 0, down: 0 }
  activeConnections = 0
  /** Errors the data path did not expect (bugs), each of which closed a connection. */
  private dataPathErrors = 0
  private readonly startedAt = Date.now()

  countDecision(action: string, reason: string, protocol: string): void {
    const key = `${action}\u0000${reason}\u0000${protocol}`
    this.decisions.set(key, (this.decisions.get(key) ?? 0) + 1)
  }

  countBytes(up: number, down: number): void {
    this.bytes.up += up
    this.bytes.down += down
  }

  countDataPathError(): void {
    this.dataPathErrors++
  }

  /** Prometheus text exposition format, version 0.0.4. */
  render(extra: { policy: string; ringSize: number }): string {
    const lines: string[] = []
    lines.push('# HELP isorun_decisions_total Egress decisions by action, reason and protocol.')
    lines.push('# TYPE isorun_decisions_total counter')
    for (const [key, count] of [...this.decisions].sort(([a], [b]) => a.localeCompare(b))) {
      const [action, reason, protocol] = key.split('\u0000') as [string, string, string]
      lines.push(
        `isorun_decisions_total{action="${action}",reason="${reason}",protocol="${protocol}"} ${count}`,
      )
    }
    lines.push('# HELP isorun_active_connections Client connections open now.')
    lines.push('# TYPE isorun_active_connections gauge')
    lines.push(`isorun_active_connections ${this.activeConnections}`)
    lines.push('# HELP isorun_bytes_total Bytes relayed, by direction (up: client to upstream).')
    lines.push('# TYPE isorun_bytes_total counter')
    lines.push(`isorun_bytes_total{direction="up"} ${this.bytes.up}`)
    lines.push(`isorun_bytes_total{direction="down"} ${this.bytes.down}`)
    lines.push(
      '# HELP isorun_data_path_errors_total Unexpected errors on the data path (each closed its connection; see the operational log).',
    )
    lines.push('# TYPE isorun_data_path_errors_total counter')
    lines.push(`isorun_data_path_errors_total ${this.dataPathErrors}`)
    lines.push('# HELP isorun_policy_info The policy in force.')
    lines.push('# TYPE isorun_policy_info gauge')
    lines.push(`isorun_policy_info{policy="${escapeLabel(extra.policy)}"} 1`)
    lines.push('# HELP isorun_events_buffered Decisions kept in the in-memory ring.')
    lines.push('# TYPE isorun_events_buffered gauge')
    lines.push(`isorun_events_buffered ${extra.ringSize}`)
    lines.push('# HELP isorun_uptime_seconds Seconds since the proxy started.')
    lines.push('# TYPE isorun_uptime_seconds gauge')
    lines.push(`isorun_uptime_seconds ${Math.round((Date.now() - this.startedAt) / 1000)}`)
    return `${lines.join('\n')}\n`
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}
