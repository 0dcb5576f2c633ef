// Runner routes for approvals, learned profiles and budgets:
//   GET  /v1/approvals[?sandbox=ID]          pending approvals across sandboxes (JSON)
//   GET  /v1/approvals/stream[?sandbox=ID]   NDJSON: the pending ones, then
//        {"type":"pending",approval} / {"type":"resolved",id,...} as they happen,
//        {"type":"heartbeat"} every 15 s
//   POST /v1/approvals/:id                   { answer: once|sandbox|deny, ttlMs?, by? }
//   GET  /v1/sandboxes/:id/suggested-profile?base=PROFILE&name=NAME
//   GET  /v1/sandboxes/:id/budgets           usage of each limit, and per destination

import type http from 'node:http'
import type { ApprovalDecisionRequest, SuggestedProfile } from 'isorun'
import { HttpError, queryParams, readJson, sendJson } from '../lib/http-json.js'
import type { ProfileCatalogue } from '../profiles/index.js'
import { learnProfile, LearnError } from '../profiles/learn.js'
import type { ApprovalBroker, ApprovalEvent } from './approvals-broker.js'
import { ID, writeChunk, type Route } from './route.js'
import { SandboxError, type SandboxManager } from './sandboxes.js'

const HEARTBEAT_MS = 15_000

function parseAnswer(body: unknown): ApprovalDecisionRequest & { by: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpError(400, 'invalid-answer', 'send { "answer": "once" | "sandbox" | "deny" }')
  const { answer, ttlMs, by, ...rest } = body as Record<string, unknown>
  const extra = Object.keys(rest)[0]
  if (extra !== undefined)
    throw new HttpError(400, 'invalid-answer', `unknown field "${extra}"; use answer, ttlMs and by`)
  if (answer !== 'once' && answer !== 'sandbox' && answer !== 'deny')
    throw new HttpError(400, 'invalid-answer', 'answer must be once, sandbox or deny')
  if (ttlMs !== undefined && (typeof ttlMs !== 'number' || answer !== 'sandbox'))
    throw new HttpError(
      400,
      'invalid-answer',
      'ttlMs is a number of milliseconds, for answer sandbox',
    )
  if (by !== undefined && (typeof by !== 'string' || by === '' || by.length > 100))
    throw new HttpError(400, 'invalid-answer', 'by must say who answers (1 to 100 characters)')
  return {
    answer,
    ...(ttlMs !== undefined ? { ttlMs: ttlMs as number } : {}),
    by: (by as string | undefined) ?? 'api',
  }
}

export function approvalRoutes(
  broker: ApprovalBroker,
  sandboxes: SandboxManager,
  catalogue: ProfileCatalogue,
): Route[] {
  return [
    {
      method: 'GET',
      pattern: /^\/v1\/approvals$/,
      handler: async (req, res) => {
        const sandbox = queryParams(req).get('sandbox') ?? undefined
        sendJson(res, 200, { approvals: broker.pending(sandbox) })
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/approvals\/stream$/,
      handler: (req, res) => streamApprovals(broker, req, res),
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/approvals/${ID}$`),
      handler: async (req, res, [id]) =>
        sendJson(res, 200, await broker.answer(id as string, parseAnswer(await readJson(req)))),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/suggested-profile$`),
      handler: async (req, res, [id]) => {
        const params = queryParams(req)
        const sandbox = id as string
        const admin = sandboxes.adminOf(sandbox)
        let seen
        try {
          seen = await admin.hostsSeen()
        } catch (err) {
          throw new SandboxError(
            502,
            'proxy-unreachable',
            `the egress proxy of sandbox ${sandbox} does not answer (${(err as Error).message})`,
          )
        }
        const base = params.get('base') ?? undefined
        try {
          const learned = learnProfile(seen.hosts, {
            name:
              params.get('name') ??
              `learned-${sandbox.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63),
            catalogue,
            sandbox,
            ...(base ? { base } : {}),
          })
          const body: SuggestedProfile = {
            name: learned.name,
            yaml: learned.yaml,
            include: learned.include,
            allow: learned.allow,
            ...(learned.diff ? { diff: learned.diff } : {}),
          }
          sendJson(res, 200, body)
        } catch (err) {
          if (err instanceof LearnError)
            throw new HttpError(400, 'invalid-learn-request', err.message)
          throw err
        }
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/budgets$`),
      handler: async (_req, res, [id]) => {
        try {
          sendJson(res, 200, await sandboxes.adminOf(id as string).budgets())
        } catch (err) {
          if (err instanceof SandboxError) throw err
          throw new SandboxError(
            502,
            'proxy-unreachable',
            `the egress proxy of sandbox ${id} does not answer (${(err as Error).message})`,
          )
        }
      },
    },
  ]
}

async function streamApprovals(
  broker: ApprovalBroker,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const sandbox = queryParams(req).get('sandbox') ?? undefined
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store' })
  const line = (event: ApprovalEvent | { type: 'heartbeat' }): void =>
    void writeChunk(res, `${JSON.stringify(event)}\n`)
  // Subscribe first, then send what is pending: nothing falls in between (duplicates are
  // possible, and the SDK drops them by id).
  const unsubscribe = broker.subscribe((event) => {
    if (
      sandbox !== undefined &&
      (event.type === 'pending' ? event.approval.sandbox : event.sandbox) !== sandbox
    )
      return
    line(event)
  })
  for (const approval of broker.pending(sandbox)) line({ type: 'pending', approval })
  const heartbeat = setInterval(() => line({ type: 'heartbeat' }), HEARTBEAT_MS)
  // Until the client leaves, or the runner stops (then the stream ends and the client reconnects).
  await Promise.race([new Promise<void>((resolve) => res.once('close', resolve)), broker.stopped])
  clearInterval(heartbeat)
  unsubscribe()
  if (!res.writableEnded) res.end()
}
