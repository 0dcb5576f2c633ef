// The DNS listener: answers A questions for names the policy allows with the
// proxy's own address (steering programs that ignore proxy variables to the
// transparent listeners), AAAA with no records, and refuses everything else.
// It never forwards a query, so DNS cannot carry data out.
//
// With `onUnknown: ask`, a name no rule allows waits for an approval, but only
// up to DNS_APPROVAL_WAIT_MS: resolvers give up after 4-5 s, so a later answer
// would reach nobody. The approval stays pending; the resolver's retry
// (or the program's next lookup) joins it.

import { decide, type Decision, type Policy } from '../policy/index.js'
import { approvalRecord, decisionAfterApproval, type ApprovalRecord } from './approvals.js'
import { record, type ProxyContext } from './context.js'
import { startDnsServer, type DnsServerHandle } from './dns-server.js'

export interface DnsListenerOptions {
  readonly host: string
  readonly port: number
  /** The IPv4 address put in answers: the proxy's sandbox-facing address. */
  readonly answerAddress: string
  /** How long a query waits for an approval; default DNS_APPROVAL_WAIT_MS. */
  readonly approvalWaitMs?: number
}

/**
 * Below Docker's embedded DNS (127.0.0.11 in a sandbox), which gives up on the
 * server it forwards to after 4 s and then answers nothing, and below glibc's
 * and c-ares' 5 s per try.
 */
export const DNS_APPROVAL_WAIT_MS = 3000

/** What a query's answer came from, handed back to the log with the query's event. */
interface Verdict {
  readonly policy: Policy
  readonly decision: Decision
  readonly startedAt: number
  readonly approval?: ApprovalRecord
}

export function startDnsListener(
  ctx: ProxyContext,
  options: DnsListenerOptions,
): Promise<DnsServerHandle> {
  const address = { host: options.host, port: options.port }
  const waitMs = options.approvalWaitMs ?? DNS_APPROVAL_WAIT_MS
  return startDnsServer({
    udp: address,
    tcp: address,
    answerAddress: options.answerAddress,
    decide: (name, type, client) => {
      const startedAt = performance.now()
      const policy = ctx.policy.current
      const decision = decide({ protocol: 'dns', host: name, port: 0, queryType: type }, policy)
      if (!decision.ask) {
        const verdict: Verdict = { policy, decision, startedAt }
        return { allow: decision.action === 'allow', context: verdict }
      }
      return ctx.approvals
        .ask(
          { protocol: 'dns', host: decision.host, port: 0, client },
          { waitMs: Math.min(waitMs, policy.approvalTimeoutMs) },
        )
        .then((outcome) => {
          const final = decisionAfterApproval(decision, outcome)
          const verdict: Verdict = {
            policy,
            decision: final,
            startedAt,
            approval: approvalRecord(outcome),
          }
          return { allow: final.action === 'allow', context: verdict }
        })
    },
    onQuery: (event) => {
      const verdict = event.context as Verdict | undefined
      const startedAt = verdict?.startedAt ?? performance.now()
      const policy = verdict?.policy ?? ctx.policy.current
      // Queries the server refused before asking (other classes, unreadable names, bad
      // messages) are decided here for the log alone.
      const decision =
        verdict?.decision ??
        decide(
          { protocol: 'dns', host: event.name, port: 0, queryType: event.type || undefined },
          policy,
        )
      const allowedAnswer = event.outcome === 'answered' || event.outcome === 'empty'
      const shown =
        allowedAnswer || decision.action === 'deny'
          ? decision
          : {
              ...decision,
              action: 'deny' as const,
              reason: 'invalid-host' as const,
              detail: `DNS ${event.outcome}`,
            }
      record(ctx, {
        policy,
        protocol: 'dns',
        decision: shown,
        client: event.client,
        startedAt,
        qtype: event.type || undefined,
        ...(verdict?.approval ? { approval: verdict.approval } : {}),
      })
    },
  })
}
