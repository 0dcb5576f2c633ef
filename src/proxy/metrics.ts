// Prometheus counters for the admin API's /metrics. Plain maps keyed by label
// values: the label sets are small and fixed (action × reason × protocol).

export class ProxyMetrics {
  private readonly decisions = new Map<string, number>()
  private readonly wouldDeny = new Map<string, number>()
  private readonly approvals = new Map<string, number>()
  private readonly bytes = { up: 0, down: 0 }
  activeConnections = 0
  /** Errors the data path did not expect (bugs), each of which closed a connection. */
  private dataPathErrors = 0
  private readonly startedAt = Date.now()

  countDecision(action: string, reason: string, protocol: string): void {
    const key = `${action}\u0000${reason}\u0000${protocol}`
    this.decisions.set(key, (this.decisions.get(key) ?? 0) + 1)
  }

  /** Report mode: allowed, but the rules would have refused it for `reason`. */
  countWouldDeny(reason: string, protocol: string): void {
    const key = `${reason}\u0000${protocol}`
    this.wouldDeny.set(key, (this.wouldDeny.get(key) ?? 0) + 1)
  }

  countApproval(answer: string): void {
    this.approvals.set(answer, (this.approvals.get(answer) ?? 0) + 1)
  }

  countBytes(up: number, down: number): void {
    this.bytes.up += up
    this.bytes.down += down
  }

  countDataPathError(): void {
    this.dataPathErrors++
  }

  /** Prometheus text exposition format, version 0.0.4. */
  render(extra: {
    policy: string
    ringSize: number
    /** Requests held now for an approval. */
    pendingApprovals?: number
    /** Budgets' usage (the ledger owns it). */
    budgets?: readonly {
      pattern: string
      up: number
      down: number
      requests: number
      exceeded: boolean
    }[]
  }): string {
    const lines: string[] = []
    lines.push('# HELP isorun_decisions_total Egress decisions by action, reason and protocol.')
    lines.push('# TYPE isorun_decisions_total counter')
    for (const [key, count] of [...this.decisions].sort(([a], [b]) => a.localeCompare(b))) {
      const [action, reason, protocol] = key.split('\u0000') as [string, string, string]
      lines.push(
        `isorun_decisions_total{action="${action}",reason="${reason}",protocol="${protocol}"} ${count}`,
      )
    }
    lines.push(
      '# HELP isorun_would_deny_total Report mode: decisions allowed that the rules would have refused, by reason and protocol.',
    )
    lines.push('# TYPE isorun_would_deny_total counter')
    for (const [key, count] of [...this.wouldDeny].sort(([a], [b]) => a.localeCompare(b))) {
      const [reason, protocol] = key.split('\u0000') as [string, string]
      lines.push(`isorun_would_deny_total{reason="${reason}",protocol="${protocol}"} ${count}`)
    }
    lines.push('# HELP isorun_approvals_total Held requests answered, by answer.')
    lines.push('# TYPE isorun_approvals_total counter')
    for (const [answer, count] of [...this.approvals].sort(([a], [b]) => a.localeCompare(b)))
      lines.push(`isorun_approvals_total{answer="${answer}"} ${count}`)
    lines.push('# HELP isorun_approvals_pending Requests held now, waiting for an answer.')
    lines.push('# TYPE isorun_approvals_pending gauge')
    lines.push(`isorun_approvals_pending ${extra.pendingApprovals ?? 0}`)
    const budgets = extra.budgets ?? []
    if (budgets.length > 0) {
      lines.push(
        '# HELP isorun_budget_bytes Bytes counted against a budget (limits pattern) in its current window.',
      )
      lines.push('# TYPE isorun_budget_bytes gauge')
      for (const b of budgets) {
        const pattern = escapeLabel(b.pattern)
        lines.push(`isorun_budget_bytes{pattern="${pattern}",direction="up"} ${b.up}`)
        lines.push(`isorun_budget_bytes{pattern="${pattern}",direction="down"} ${b.down}`)
      }
      lines.push(
        '# HELP isorun_budget_requests Requests counted against a budget in its current window.',
      )
      lines.push('# TYPE isorun_budget_requests gauge')
      for (const b of budgets)
        lines.push(`isorun_budget_requests{pattern="${escapeLabel(b.pattern)}"} ${b.requests}`)
      lines.push('# HELP isorun_budget_exceeded 1 while a budget is used up.')
      lines.push('# TYPE isorun_budget_exceeded gauge')
      for (const b of budgets)
        lines.push(
          `isorun_budget_exceeded{pattern="${escapeLabel(b.pattern)}"} ${b.exceeded ? 1 : 0}`,
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
