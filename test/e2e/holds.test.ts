// The data path's hold and accounting stages end to end on Docker: curl in
// the sandbox, through its proxy, to the stand-in. A held CONNECT is answered
// once through the SDK (nothing reached the stand-in before), the next one
// asks again and is denied through the CLI (curl sees the 403); a held plain
// HTTP request is answered by the runner's webhook (the stand-in is its
// receiver on the egress side). An upload past its budget is cut (the
// stand-in read less than the budget, by no more than a TCP window), and the
// next connection gets a 429.

import { describe, expect, it } from 'vitest'
import {
  client,
  e2e,
  isorunCli,
  nextApproval,
  skipReason,
  standinRequests,
  waitFor,
  withSandbox,
} from './helpers.js'
import { run } from './setup/sh.js'

describe.skipIf(skipReason !== undefined)('held connections and budgets on Docker', () => {
  it('a held CONNECT answered through the SDK and the CLI, a held HTTP request by the webhook', async () => {
    await withSandbox(
      { network: { allow: ['pypi.org'], onUnknown: 'ask', approvalTimeoutMs: 120_000 } },
      async (sbx) => {
        const controller = new AbortController()
        const approvals = client().approvals({ sandbox: sbx.id, signal: controller.signal })
        try {
          const before = (await standinRequests()).length
          const first = sbx.exec('curl -sS -m 100 https://api.stripe.com/hello')
          const a1 = await nextApproval(approvals)
          expect(a1).toMatchObject({ protocol: 'connect', host: 'api.stripe.com', port: 443 })
          expect((await standinRequests()).slice(before)).toEqual([])
          await a1.allowOnce('e2e-sdk')
          const allowed = await first
          expect(allowed.stdout, allowed.stderr).toContain('stand-in for api.stripe.com')

          // The next connection asks again; the CLI denies it and curl gets the 403.
          const second = sbx.exec(
            'curl -sS -m 100 -o /dev/null -w "%{http_connect}" https://api.stripe.com/hello',
          )
          const a2 = await nextApproval(approvals)
          expect(a2.id).not.toBe(a1.id)
          const denied = await isorunCli('deny', a2.id, '--by', 'e2e-cli')
          expect(denied.code, denied.stderr).toBe(0)
          expect((await second).stdout).toBe('403')

          // Plain HTTP: the webhook's receiver answers once for this path.
          const hooked = await sbx.exec('curl -sS -m 100 http://api.stripe.com/webhook-once')
          expect(hooked.stdout, hooked.stderr).toContain('stand-in for api.stripe.com')
        } finally {
          controller.abort()
        }
        const events = await sbx.networkEvents({ limit: 1000 })
        const answered = events
          .filter((e) => e.host === 'api.stripe.com' && e.approval)
          .map((e) => [e.protocol, e.approval?.answer, e.approval?.by])
        expect(answered).toEqual([
          ['connect', 'once', 'e2e-sdk'],
          ['connect', 'deny', 'e2e-cli'],
          ['http', 'once', 'webhook:standin'],
        ])
      },
    )
  })

  it('an upload past its budget is cut, and the next connection gets a 429', async () => {
    await withSandbox(
      {
        network: {
          allow: ['api.stripe.com'],
          limits: { 'api.stripe.com': { upload: '256KiB' } },
        },
      },
      async (sbx) => {
        const upload = await sbx.exec(
          'head -c 1048576 /dev/zero > /tmp/up.bin && curl -sS -m 60 --data-binary @/tmp/up.bin https://api.stripe.com/upload',
        )
        expect(upload.exitCode, upload.stdout).not.toBe(0)
        // What the stand-in read of the body: the budget counts TLS bytes, so within one TCP
        // window (and the TLS overhead) of the limit, and never the whole upload.
        const received = await waitFor('the stand-in to log the cut upload', async () => {
          const { stdout } = await run('docker', ['logs', e2e.standinName])
          const line = stdout
            .split('\n')
            .filter((l) => l.startsWith('{"upload"'))
            .map((l) => JSON.parse(l) as { upload: number; complete: boolean })
            .at(-1)
          return line
        })
        expect(received.complete).toBe(false)
        expect(received.upload).toBeLessThanOrEqual(256 * 1024)
        expect(received.upload).toBeGreaterThan(256 * 1024 - 64 * 1024)
        const next = await sbx.exec(
          'curl -sS -m 60 -o /dev/null -w "%{http_connect}" https://api.stripe.com/hello',
        )
        expect(next.stdout).toBe('429')
        const { budgets } = await sbx.budgets()
        expect(budgets).toMatchObject([
          { pattern: 'api.stripe.com', up: 256 * 1024, exceeded: true, requests: 1 },
        ])
        const events = await sbx.networkEvents({ limit: 100 })
        expect(events.map((e) => e.reason)).toContain('budget-exceeded')
        expect(events.find((e) => e.error?.startsWith('budget exceeded'))).toMatchObject({
          action: 'allow',
          bytesUp: 256 * 1024,
        })
      },
    )
  })
})
