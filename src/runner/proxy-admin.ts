// The runner's client for a sidecar's admin API (reached on the egress network).

import type { PolicySpec } from '../policy/index.js'
import type { InterceptionSettings, InterceptionSummary } from '../proxy/interception.js'
import type {
  ApprovalDecisionRequest,
  ApprovalResult,
  NetworkEvent,
  NetworkEventsQuery,
  SandboxBudgets,
} from 'isorun'
import type { LiveRule, PendingApprovalView } from '../proxy/approvals.js'
import type { HostSeen } from '../proxy/hosts-seen.js'

export class ProxyAdminError extends Error {
  constructor(
    message: string,
    /** The admin API's HTTP status and error code, when it answered. */
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message)
  }
}

export class ProxyAdmin {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = 5000,
    signal?: AbortSignal,
  ): Promise<T> {
    let res: Response
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: signal
          ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
          : AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } }
      throw new ProxyAdminError(
        `proxy admin API at ${this.url} unreachable: ${e.cause?.code ?? e.message}`,
      )
    }
    const text = await res.text()
    const parsed = text
      ? (JSON.parse(text) as T & { error?: { message?: string; code?: string } })
      : ({} as T & { error?: { message?: string; code?: string } })
    if (!res.ok)
      throw new ProxyAdminError(
        parsed.error?.message ?? `proxy admin API answered ${res.status}`,
        res.status,
        parsed.error?.code,
      )
    return parsed
  }

  async healthy(): Promise<boolean> {
    try {
      await this.call('GET', '/healthz', undefined, 1000)
      return true
    } catch {
      return false
    }
  }

  /** Polls /healthz until the proxy answers or the time is up. */
  async waitUntilHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await this.healthy()) return
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new ProxyAdminError(`the egress proxy did not become healthy within ${timeoutMs} ms`)
  }

  setPolicy(spec: PolicySpec, source: unknown): Promise<unknown> {
    return this.call('PUT', '/policy', { spec, source })
  }

  getPolicy(): Promise<{ spec: PolicySpec; source: unknown }> {
    return this.call('GET', '/policy')
  }

  /** Sends the CA, secrets and upstream CAs (replacing what the proxy had). */
  setInterception(settings: InterceptionSettings): Promise<InterceptionSummary> {
    return this.call('PUT', '/interception', settings)
  }

  getInterception(): Promise<InterceptionSummary> {
    return this.call('GET', '/interception')
  }

  async events(query: NetworkEventsQuery): Promise<NetworkEvent[]> {
    const params = new URLSearchParams()
    if (query.action) params.set('action', query.action)
    if (query.limit !== undefined) params.set('limit', String(query.limit))
    if (query.since) params.set('since', query.since)
    const result = await this.call<{ events: NetworkEvent[] }>(
      'GET',
      `/events?${params.toString()}`,
    )
    return result.events
  }

  /** Long poll: pending approvals once they differ from version `after`, or after `waitMs`. */
  approvals(
    after: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ version: number; pending: PendingApprovalView[]; liveRules: LiveRule[] }> {
    return this.call(
      'GET',
      `/approvals?after=${after}&wait=${waitMs}`,
      undefined,
      waitMs + 5000,
      signal,
    )
  }

  answerApproval(
    id: string,
    answer: ApprovalDecisionRequest & { by: string },
  ): Promise<ApprovalResult> {
    return this.call('POST', `/approvals/${encodeURIComponent(id)}`, answer)
  }

  hostsSeen(): Promise<{ hosts: HostSeen[]; dropped: number }> {
    return this.call('GET', '/hosts-seen')
  }

  budgets(): Promise<SandboxBudgets> {
    return this.call('GET', '/budgets')
  }
}
