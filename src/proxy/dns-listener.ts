// The DNS listener: answers A questions for names the policy allows with the
// proxy's own address (steering programs that ignore proxy variables to the
// transparent listeners), AAAA with no records, and refuses everything else.
// It never forwards a query, so DNS cannot carry data out.

import { decide } from '../policy/index.js'
import { record, type ProxyContext } from './context.js'
import { startDnsServer, type DnsServerHandle } from './dns-server.js'

export interface DnsListenerOptions {
  readonly host: string
  readonly port: number
  /** The IPv4 address put in answers: the proxy's sandbox-facing address. */
  readonly answerAddress: string
}

export function startDnsListener(
  ctx: ProxyContext,
  options: DnsListenerOptions,
): Promise<DnsServerHandle> {
  const address = { host: options.host, port: options.port }
  return startDnsServer({
    udp: address,
    tcp: address,
    answerAddress: options.answerAddress,
    decide: (name, type) => ({
      allow:
        decide({ protocol: 'dns', host: name, port: 0, queryType: type }, ctx.policy.current)
          .action === 'allow',
    }),
    onQuery: (event) => {
      // Logged with the same decide() the answer came from (the policy may only differ if
      // it was replaced in between, in which case the log shows the newer answer).
      const startedAt = performance.now()
      const policy = ctx.policy.current
      const decision = decide(
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
      })
    },
  })
}
