// The proxy's admin API, on its own listener (never the sandbox-facing
// address) and behind a bearer token (except the liveness probe):
//   GET /healthz   liveness, no token
//   GET /metrics   Prometheus text
//   GET /events?action=deny&limit=N&since=ISO   recent decisions, oldest first
//                  (action: allow, deny, would-deny, or blocked = deny and would-deny)
//   GET /approvals?after=VERSION&wait=MS   pending approvals and live rules; a long poll:
//                  answers once the pending set differs from VERSION, or after MS (at most 60 s)
//   POST /approvals/:id   { answer: once|sandbox|deny, by, ttlMs? }: answers a pending approval
//   GET /budgets   usage of each limit, and per destination
//   GET /hosts-seen  every destination used or refused by the policy, for learning a profile
//   GET /policy    the policy spec in force, and the source it was sent with
//   PUT /policy    replace the policy; new connections use it, a bad one gets 400 and changes nothing.
//                  Body: one of { profile } | { network } | { spec }, plus an optional `source`
//                  (any JSON the sender wants back from GET /policy, e.g. the runner's request)
//   GET /interception  the CA certificate and fingerprint, the secrets without their values,
//                      the upstream CAs: never a private key or a secret value
//   PUT /interception  replace them all: { ca?: { cert, key }, secrets?: [...], upstreamCa?: PEM };
//                      a bad body gets 400 and changes nothing

import http from 'node:http'
import type { OperatorSettings } from '../policy/index.js'
import {
  hasBearer,
  HttpError,
  limitParam,
  queryParams,
  readJson,
  sendError,
  sendJson,
} from '../lib/http-json.js'
import { ApprovalError } from './approvals.js'
import type { ProxyContext } from './context.js'
import { EVENT_ACTIONS, type EventAction } from './decision-log.js'
import { InterceptionSettingsError, parseInterceptionSettings } from './interception.js'
import {
  catalogueOnce,
  compileSource,
  PolicySourceError,
  specFromSource,
  type CatalogueSource,
} from './policy-source.js'

export interface AdminOptions {
  readonly token: string
  readonly operator: OperatorSettings
  /** The catalogue, or what opens it when a PUT /policy first names a profile. */
  readonly catalogue: CatalogueSource | undefined
}

interface AdminState {
  readonly token: string
  readonly operator: OperatorSettings
  readonly catalogue: ReturnType<typeof catalogueOnce>
}

export function createAdminServer(ctx: ProxyContext, adminOptions: AdminOptions): http.Server {
  const options: AdminState = { ...adminOptions, catalogue: catalogueOnce(adminOptions.catalogue) }
  const server = http.createServer(
    // Checked every second, not every 30 s (Node's default), so the timeouts hold.
    { headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1000 },
    (req, res) => {
      handle(ctx, options, req, res).catch((err: unknown) => {
        if (err instanceof HttpError) sendError(res, err)
        else sendError(res, new HttpError(500, 'internal', (err as Error).message))
      })
    },
  )
  return server
}

async function handle(
  ctx: ProxyContext,
  options: AdminState,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]
  if (path === '/healthz' && req.method === 'GET') {
    sendJson(res, 200, { ok: true, policy: ctx.policy.current.name, connections: ctx.tracker.size })
    return
  }
  if (!hasBearer(req, options.token))
    throw new HttpError(401, 'unauthorized', 'send Authorization: Bearer <admin token>')
  const answered = /^\/approvals\/([A-Za-z0-9_-]{1,64})$/.exec(path ?? '')
  if (answered && req.method === 'POST') {
    await answerApproval(ctx, answered[1] as string, req, res)
    return
  }
  const route = `${req.method ?? ''} ${path}`
  switch (route) {
    case 'GET /metrics': {
      const body = ctx.log.metrics.render({
        policy: ctx.policy.current.name,
        ringSize: ctx.log.size,
        pendingApprovals: ctx.approvals.size,
        budgets: ctx.budgets.budgets(),
      })
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' })
      res.end(body)
      return
    }
    case 'GET /events': {
      const params = queryParams(req)
      const action = params.get('action') as EventAction | null
      if (action !== null && !EVENT_ACTIONS.includes(action))
        throw new HttpError(400, 'invalid-action', `action must be ${EVENT_ACTIONS.join(', ')}`)
      const since = params.get('since') ?? undefined
      const events = ctx.log.events({
        ...(action ? { action } : {}),
        limit: limitParam(params, 100, 10_000),
        ...(since ? { since } : {}),
      })
      sendJson(res, 200, { events })
      return
    }
    case 'GET /policy':
      sendJson(res, 200, { spec: ctx.policy.current.spec, source: ctx.policy.source ?? null })
      return
    case 'PUT /policy': {
      const body = await readJson(req)
      try {
        const { source, ...policySource } = (
          typeof body === 'object' && body !== null ? body : {}
        ) as Record<string, unknown>
        // Rules that approvals added live stay: the runner resends policies on its own schedule.
        const policy = compileSource(
          ctx.approvals.withLiveRules(await specFromSource(policySource, options.catalogue)),
          options.operator,
        )
        ctx.policy.replace(policy, source)
        ctx.log.operational.info(
          {
            policy: policy.name,
            mode: policy.mode,
            allow: policy.allow.size,
            deny: policy.deny.size,
          },
          'policy replaced',
        )
        sendJson(res, 200, {
          policy: policy.name,
          mode: policy.mode,
          allow: policy.allow.size,
          deny: policy.deny.size,
        })
      } catch (err) {
        if (err instanceof PolicySourceError)
          throw new HttpError(400, 'invalid-policy', err.message)
        throw err
      }
      return
    }
    case 'GET /approvals': {
      const params = queryParams(req)
      const after = Number(params.get('after') ?? -1)
      const wait = Math.min(Math.max(Number(params.get('wait') ?? 0) || 0, 0), 60_000)
      // A long poll ends early when the caller leaves.
      const gone = new AbortController()
      res.once('close', () => gone.abort())
      const { version, pending } = await ctx.approvals.poll(after, wait, gone.signal)
      if (!res.destroyed)
        sendJson(res, 200, { version, pending, liveRules: ctx.approvals.liveRules() })
      return
    }
    case 'GET /hosts-seen':
      sendJson(res, 200, { hosts: ctx.log.hostsSeen.list(), dropped: ctx.log.hostsSeen.dropped })
      return
    case 'GET /budgets':
      sendJson(res, 200, {
        budgets: ctx.budgets.budgets(),
        destinations: ctx.budgets.perDestination(),
      })
      return
    case 'GET /interception':
      sendJson(res, 200, ctx.interception.describe())
      return
    case 'PUT /interception': {
      const body = await readJson(req)
      try {
        ctx.interception.replace(parseInterceptionSettings(body))
      } catch (err) {
        if (err instanceof InterceptionSettingsError)
          throw new HttpError(400, 'invalid-interception', err.message)
        throw err
      }
      const summary = ctx.interception.describe()
      ctx.log.operational.info(
        {
          ca: summary.ca?.fingerprint ?? null,
          secrets: summary.secrets.map((s) => s.name),
          upstreamCa: summary.upstreamCa?.certificates ?? 0,
        },
        'interception settings replaced',
      )
      sendJson(res, 200, summary)
      return
    }
    default:
      throw new HttpError(
        404,
        'not-found',
        `no route ${route}; try GET /healthz, /metrics, /events, /policy, /interception, /approvals, /budgets, /hosts-seen, PUT /policy, /interception or POST /approvals/ID`,
      )
  }
}

async function answerApproval(
  ctx: ProxyContext,
  id: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const body = (await readJson(req)) as Record<string, unknown> | null
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpError(
      400,
      'invalid-answer',
      'send { "answer": "once" | "sandbox" | "deny", "by": WHO }',
    )
  const { answer, by, ttlMs } = body
  if (typeof by !== 'string' || by === '' || by.length > 200)
    throw new HttpError(400, 'invalid-answer', '"by" must say who answers (1 to 200 characters)')
  if (ttlMs !== undefined && typeof ttlMs !== 'number')
    throw new HttpError(400, 'invalid-answer', 'ttlMs must be a number of milliseconds')
  try {
    sendJson(
      res,
      200,
      ctx.approvals.answer(id, {
        answer: answer as 'once' | 'sandbox' | 'deny',
        by,
        ...(ttlMs !== undefined ? { ttlMs } : {}),
      }),
    )
  } catch (err) {
    if (err instanceof ApprovalError) throw new HttpError(err.status, err.code, err.message)
    throw err
  }
}
