// The DNS listener: answers A questions for names the policy allows with the
// proxy's own address (steering programs that ignore proxy variables to the
// transparent listeners), AAAA with no records, and refuses everything else.
// It never forwards a query, so DNS cannot carry data out.
//
// Each query is decided once: the decision that chose the answer is the one
// logged. A query that never reaches decide() (malformed, not one question, an
// opcode other than QUERY, a class other than IN, a name that cannot be a host
// name) is logged as refused with the reason `bad-dns-query`.

import { decide, type Decision, type Policy } from '../policy/index.js'
import { record, type ProxyContext } from './context.js'
import { startDnsServer, type DnsQueryEvent, type DnsServerHandle } from './dns-server.js'

export interface DnsListenerOptions {
  readonly host: string
  readonly port: number
  /** The IPv4 address put in answers: the proxy's sandbox-facing address. */
  readonly answerAddress: string
}

/** A question's decision, with the policy it was made under (what the log names). */
interface DnsDecision {
  readonly allow: boolean
  readonly decision: Decision
  readonly policy: Policy
}

export function startDnsListener(
  ctx: ProxyContext,
  options: DnsListenerOptions,
): Promise<DnsServerHandle> {
  const address = { host: options.host, port: options.port }
  return startDnsServer<DnsDecision>({
    udp: address,
    tcp: address,
    answerAddress: options.answerAddress,
    decide: (name, type) => {
      const policy = ctx.policy.current
      const decision = decide({ protocol: 'dns', host: name, port: 0, queryType: type }, policy)
      return { allow: decision.action === 'allow', decision, policy }
    },
    onQuery: (event) => {
      const startedAt = performance.now()
      const decided = event.decision
      record(ctx, {
        policy: decided?.policy ?? ctx.policy.current,
        protocol: 'dns',
        decision: decided?.decision ?? badQuery(event),
        client: event.client,
        startedAt,
        qtype: event.type || undefined,
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
