// Approvals end to end on Docker, raised the way a program in the sandbox
// raises them today: a DNS question for a name no rule allows (the hold stages
// for CONNECT, SOCKS, plain and transparent HTTP come with the data-path
// pipeline; they call the same approvals module). Answered through the SDK
// iterator, sandbox.onApproval() and the CLI: once lets that query through and
// the next asks again; for-sandbox adds a live rule that every path then
// follows (curl through the proxy too); deny refuses; and a DNS query whose
// wait runs out gets REFUSED rather than hanging.

import { describe, expect, it } from 'vitest'
import type { Sandbox } from 'isorun'
import { client, isorunCli, nextApproval, skipReason, withSandbox } from './helpers.js'

/** A DNS question from inside the sandbox (its resolver is the proxy): the answer, or the status. */
async function lookup(sbx: Sandbox, name: string): Promise<string> {
  const r = await sbx.exec(['dig', '+tries=1', '+time=15', name, 'A'])
  // An answer record: `name. TTL IN A address` (the question line starts with ';').
  const answer = /^[^;\s]\S*\s+\d+\s+IN\s+A\s+(\S+)$/m.exec(r.stdout)?.[1]
  const status = /status: (\w+)/.exec(r.stdout)?.[1]
  return answer ?? status ?? `no answer: ${r.stdout}${r.stderr}`
}

describe.skipIf(skipReason !== undefined)('approvals on Docker', () => {
  it('SDK iterator, CLI and onApproval: once, deny, for the sandbox with a TTL; a late answer does not hang', async () => {
    await withSandbox(
      { network: { allow: ['pypi.org'], onUnknown: 'ask', approvalTimeoutMs: 60_000 } },
      async (sbx) => {
        const proxy = sbx.info.proxyAddress
        const controller = new AbortController()
        const approvals = client().approvals({ sandbox: sbx.id, signal: controller.signal })
        try {
          // Once: that query is answered; the next one asks again.
          const first = lookup(sbx, 'api.stripe.com')
          const a1 = await nextApproval(approvals)
          expect(a1).toMatchObject({
            sandbox: sbx.id,
            protocol: 'dns',
            host: 'api.stripe.com',
            rule: 'api.stripe.com',
          })
          await a1.allowOnce('e2e-sdk')
          expect(await first).toBe(proxy)

          // Deny through the CLI, found with `isorun approvals --json`.
          const second = lookup(sbx, 'api.stripe.com')
          const a2 = await nextApproval(approvals)
          expect(a2.id).not.toBe(a1.id)
          const listed = await isorunCli('approvals', '--json', '--sandbox', sbx.id)
          expect(JSON.parse(listed.stdout)).toContainEqual(expect.objectContaining({ id: a2.id }))
          const denied = await isorunCli('deny', a2.id, '--by', 'e2e-cli')
          expect(denied.code, denied.stderr).toBe(0)
          expect(await second).toBe('REFUSED')

          // For the sandbox, with a TTL, from the CLI: a live rule every path follows.
          const third = lookup(sbx, 'api.stripe.com')
          const a3 = await nextApproval(approvals)
          const approved = await isorunCli('approve', a3.id, '--ttl', '10m')
          expect(approved.code, approved.stderr).toBe(0)
          expect(approved.stdout).toMatch(/allowed for the sandbox: api\.stripe\.com until /)
          expect(await third).toBe(proxy)
          expect(await lookup(sbx, 'api.stripe.com')).toBe(proxy)
          const curl = await sbx.exec('curl -sS -m 20 https://api.stripe.com/hello')
          expect(curl.stdout).toContain('stand-in for api.stripe.com')

          // A DNS wait (3 s) shorter than the approval: REFUSED, not a hang; the approval stays.
          expect(await lookup(sbx, 'api.openweathermap.org')).toBe('REFUSED')
          const pending = await nextApproval(approvals)
          expect(pending).toMatchObject({ host: 'api.openweathermap.org' })
          await pending.allowForSandbox({ by: 'e2e-late' })
          expect(await lookup(sbx, 'api.openweathermap.org')).toBe(proxy)
        } finally {
          controller.abort()
        }

        // onApproval: a handler per sandbox.
        const handled = sbx.onApproval((a) =>
          a.host === 'allowed-by-handler.example' ? 'once' : 'deny',
        )
        try {
          expect(await lookup(sbx, 'allowed-by-handler.example')).toBe(proxy)
          expect(await lookup(sbx, 'denied-by-handler.example')).toBe('REFUSED')
        } finally {
          handled.stop()
        }

        // Every answer is in the events with who gave it; a deny rule or nothing else is asked.
        const events = await sbx.networkEvents({ limit: 1000 })
        const by = (host: string) =>
          events
            .filter((e) => e.host === host && e.approval)
            .map((e) => [e.approval?.answer, e.approval?.by])
        expect(by('api.stripe.com')).toEqual([
          ['once', 'e2e-sdk'],
          ['deny', 'e2e-cli'],
          ['sandbox', expect.stringMatching(/^cli:/)],
        ])
        expect(by('allowed-by-handler.example')).toEqual([['once', 'sdk:onApproval']])
        expect(by('denied-by-handler.example')).toEqual([['deny', 'sdk:onApproval']])
        expect((await client().pendingApprovals({ sandbox: sbx.id })).length).toBe(0)
      },
    )
  })
})
