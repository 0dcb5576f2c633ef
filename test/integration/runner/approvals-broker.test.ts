// The runner's approval broker against a real `isorun proxy` process (the
// built CLI) whose profile asks: DNS questions raise real approvals; the
// broker long-polls them, fans them out to subscribers and to a webhook (a
// real local HTTP server that checks the HMAC signature), and routes answers
// back (from the webhook's response body, or through broker.answer()).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Resolver } from 'node:dns/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../../helpers/proxy.js'
import { spawnProcess, type Spawned } from '../../helpers/run.js'
import {
  signWebhook,
  verifyWebhook,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  type WebhookPayload,
} from '../../../src/runner/approval-webhook.js'
import { ApprovalBroker, type ApprovalEvent } from '../../../src/runner/approvals-broker.js'
import { ProxyAdmin } from '../../../src/runner/proxy-admin.js'
import { SandboxError } from '../../../src/runner/sandboxes.js'

const ROOT = resolve(import.meta.dirname, '../../..')
const CLI = join(ROOT, 'dist/src/cli/main.js')
const TOKEN = 'broker-test-admin-token-0123456789'
const SECRET = 'broker-test-webhook-secret-0123'
const ANSWER = '127.0.0.42'

let proc: Spawned
let profilesDir: string
let dnsPort: number
let broker: ApprovalBroker
let hook: http.Server
const received: { valid: boolean; payload: WebhookPayload }[] = []
const events: ApprovalEvent[] = []

beforeAll(async () => {
  profilesDir = mkdtempSync(join(tmpdir(), 'isorun-broker-'))
  writeFileSync(
    join(profilesDir, 'asks.yaml'),
    'name: asks\nmode: allow-list\nonUnknown: ask\napprovalTimeoutMs: 60000\nallow: [known.test]\n',
  )
  dnsPort = await freePort()
  proc = spawnProcess(process.execPath, [
    CLI,
    'proxy',
    '--profile',
    'asks',
    '--profiles-dir',
    profilesDir,
    '--dns',
    `127.0.0.1:${dnsPort}`,
    '--dns-answer',
    ANSWER,
    '--admin',
    '127.0.0.1:0',
    '--admin-token',
    TOKEN,
    '--sandbox-id',
    'sbx-a',
  ])
  const m = await proc.waitForStderr(/listening: .*\n/)
  const adminPort = Number(/admin 127\.0\.0\.1:(\d+)/.exec(m[0])?.[1])

  // The operator's webhook: checks the signature, answers some approvals in its response.
  hook = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      const valid = verifyWebhook(
        SECRET,
        {
          timestamp: req.headers[TIMESTAMP_HEADER.toLowerCase()] as string | undefined,
          signature: req.headers[SIGNATURE_HEADER.toLowerCase()] as string | undefined,
        },
        body,
      )
      const payload = JSON.parse(body) as WebhookPayload
      received.push({ valid, payload })
      if (valid && payload.approval.host === 'hook-once.test') {
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ answer: 'once', by: 'ops' }))
      } else {
        res.writeHead(204)
        res.end()
      }
    })
  })
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r))
  const admin = new ProxyAdmin(`http://127.0.0.1:${adminPort}`, TOKEN)
  broker = new ApprovalBroker({
    proxies: () => [{ id: 'sbx-a', admin }],
    log: { info: () => undefined, warn: () => undefined },
    webhook: {
      url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
      secret: SECRET,
      publicUrl: 'http://127.0.0.1:8080/',
    },
  })
  broker.subscribe((e) => events.push(e))
  broker.start()
})

afterAll(async () => {
  broker?.stop()
  proc?.kill('SIGKILL')
  await new Promise((r) => hook?.close(r))
  if (profilesDir) rmSync(profilesDir, { recursive: true, force: true })
})

function lookup(name: string): Promise<string> {
  const r = new Resolver({ timeout: 10_000, tries: 1 })
  r.setServers([`127.0.0.1:${dnsPort}`])
  return r.resolve4(name).then(
    (a) => a.join(','),
    (err: NodeJS.ErrnoException) => err.code ?? String(err),
  )
}

/** Waits for a condition that events make true (a safety net, not a timing assertion). */
async function until<T>(find: () => T | undefined): Promise<T> {
  for (;;) {
    const hit = find()
    if (hit !== undefined) return hit
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('the approval broker', () => {
  it('a webhook answer in the response body lets the held query through; the signature checks out', async () => {
    expect(await lookup('hook-once.test')).toBe(ANSWER)
    const call = received.find((r) => r.payload.approval.host === 'hook-once.test')
    expect(call?.valid).toBe(true)
    expect(call?.payload).toMatchObject({
      type: 'approval.requested',
      approval: {
        sandbox: 'sbx-a',
        protocol: 'dns',
        host: 'hook-once.test',
        rule: 'hook-once.test',
      },
    })
    expect(call?.payload.answerUrl).toBe(
      `http://127.0.0.1:8080/v1/approvals/${call?.payload.approval.id}`,
    )
    // The proxy logged the answer with who gave it.
    const lines = await proc.waitForStdoutLines((ls) =>
      ls.some((l) => l.msg === 'approval answered' && l.host === 'hook-once.test'),
    )
    expect(lines.find((l) => l.msg === 'approval answered')).toMatchObject({
      answer: 'once',
      by: 'webhook:ops',
    })
  })

  it('subscribers see the pending approval; broker.answer() routes the answer to its proxy', async () => {
    const held = lookup('api-answer.test')
    const pending = await until(() =>
      events.find(
        (e): e is Extract<ApprovalEvent, { type: 'pending' }> =>
          e.type === 'pending' && e.approval.host === 'api-answer.test',
      ),
    )
    expect(broker.pending('sbx-a').map((a) => a.id)).toContain(pending.approval.id)
    const result = await broker.answer(pending.approval.id, { answer: 'sandbox', by: 'test:dana' })
    expect(result).toMatchObject({ sandbox: 'sbx-a', answer: 'sandbox', rule: 'api-answer.test' })
    expect(await held).toBe(ANSWER)
    const resolved = await until(() =>
      events.find((e) => e.type === 'resolved' && e.id === pending.approval.id),
    )
    expect(resolved).toMatchObject({ answer: 'sandbox', by: 'test:dana', sandbox: 'sbx-a' })
    // The live rule answers at once now, with no new approval.
    expect(await lookup('api-answer.test')).toBe(ANSWER)
    // The webhook heard of it too, and left it to others (204).
    expect(received.some((r) => r.payload.approval.id === pending.approval.id && r.valid)).toBe(
      true,
    )
  })

  it('deny through the broker refuses; an unknown id is a 404', async () => {
    const held = lookup('no.test')
    const pending = await until(() => broker.pending().find((a) => a.host === 'no.test'))
    await broker.answer(pending.id, { answer: 'deny', by: 'test' })
    expect(await held).toBe('EREFUSED')
    const unknown = broker.answer('apr_unknown', { answer: 'once', by: 'x' })
    await expect(unknown).rejects.toBeInstanceOf(SandboxError)
    await expect(unknown).rejects.toMatchObject({ status: 404, code: 'approval-not-found' })
  })

  it('signatures: a changed body, a wrong secret or an old timestamp fail', () => {
    const now = Date.now()
    const ts = String(Math.floor(now / 1000))
    const body = '{"type":"approval.requested"}'
    const signature = signWebhook(SECRET, ts, body)
    expect(verifyWebhook(SECRET, { timestamp: ts, signature }, body, now)).toBe(true)
    expect(verifyWebhook(SECRET, { timestamp: ts, signature }, `${body} `, now)).toBe(false)
    expect(verifyWebhook('another-secret-0123456', { timestamp: ts, signature }, body, now)).toBe(
      false,
    )
    expect(verifyWebhook(SECRET, { timestamp: ts, signature }, body, now + 301_000)).toBe(false)
    expect(verifyWebhook(SECRET, { timestamp: undefined, signature }, body, now)).toBe(false)
  })
})
