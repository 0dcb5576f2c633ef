// The DNS listener: answers A questions for names the policy allows with the
// proxy's own address (steering programs that ignore proxy variables to the
// transparent listeners), AAAA with no records, and refuses everything else.
// It never forwards a query, so DNS cannot carry data out.
//
// Each query is decided once: the decision that chose the answer is the one
// logged. A query that never reaches decide() (malformed, not one question, an
// opcode other than QUERY, a class other than IN, a name that cannot be a host
// name) is logged as refused with the reason `bad-dns-query`.
//
// With `onUnknown: ask`, a name no rule allows waits for an approval, but only
// up to DNS_APPROVAL_WAIT_MS: resolvers give up after 4-5 s, so a later answer
// would reach nobody. The approval stays pending; the resolver's retry
// (or the program's next lookup) joins it.

import { decide, type Decision, type Policy } from '../policy/index.js'
import { approvalRecord, decisionAfterApproval, type ApprovalRecord } from './approvals.js'
import { record, type ProxyContext } from './context.js'
import { startDnsServer, type DnsQueryEvent, type DnsServerHandle } from './dns-server.js'

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

/** A question's decision, with the policy it was made under (what the log names). */
interface DnsDecision {
  readonly allow: boolean
  readonly decision: Decision
  readonly policy: Policy
  readonly startedAt: number
  /** Set when the name waited for an approval: who answered, and how. */
  readonly approval?: ApprovalRecord
}

export function startDnsListener(
  ctx: ProxyContext,
  options: DnsListenerOptions,
): Promise<DnsServerHandle> {
  const address = { host: options.host, port: options.port }
  const waitMs = options.approvalWaitMs ?? DNS_APPROVAL_WAIT_MS
  return startDnsServer<DnsDecision>({
    udp: address,
    tcp: address,
    answerAddress: options.answerAddress,
    decide: (name, type, client) => {
      const startedAt = performance.now()
      const policy = ctx.policy.current
      const decision = decide({ protocol: 'dns', host: name, port: 0, queryType: type }, policy)
      if (!decision.ask) return { allow: decision.action === 'allow', decision, policy, startedAt }
      return ctx.approvals
        .ask(
          { protocol: 'dns', host: decision.host, port: 0, client },
          { waitMs: Math.min(waitMs, policy.approvalTimeoutMs) },
        )
        .then((outcome) => {
          const final = decisionAfterApproval(decision, outcome)
          return {
            allow: final.action === 'allow',
            decision: final,
            policy,
            startedAt,
            approval: approvalRecord(outcome),
          }
        })
    },
    onQuery: (event) => {
      const decided = event.decision
      record(ctx, {
        policy: decided?.policy ?? ctx.policy.current,
        protocol: 'dns',
        decision: decided?.decision ?? badQuery(event),
        client: event.client,
        startedAt: decided?.startedAt ?? performance.now(),
        qtype: event.type || undefined,
        ...(decided?.approval ? { approval: decided.approval } : {}),
      })
    },
  })
}

/** The refusal logged for a query the DNS server rejected before any decision. */
function badQuery(event: DnsQueryEvent<DnsDecision>): Decision {
  return {
    action: 'deny',
    reason: 'bad-dns-query',
    rule: null,
    from: null,
    host: event.name,
    port: 0,
    detail: `${event.rcode}: ${event.problem ?? event.outcome}`,
  }
}
