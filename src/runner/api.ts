// The runner's HTTP API: JSON in and out, `{ error: { code, message } }` on
// failure, a bearer token on every route but /healthz.

import http from 'node:http'
import type { ProfileCatalogue } from '../profiles/index.js'
import type { NetworkProfileDetail } from 'isorun'
import {
  hasBearer,
  HttpError,
  limitParam,
  queryParams,
  readJson,
  sendError,
  sendJson,
} from '../lib/http-json.js'
import { approvalRoutes } from './approval-routes.js'
import type { ApprovalBroker } from './approvals-broker.js'
import type { RunnerConfig } from './config.js'
import { fileRoutes } from './file-routes.js'
import { processRoutes } from './process-routes.js'
import { ProcessTable } from './processes.js'
import { ID, type Route } from './route.js'
import { SandboxError, type ManagerLogger, type SandboxManager } from './sandboxes.js'
import { parseCreateRequest, parseUpdateNetwork } from './validate.js'
import { EVENT_ACTIONS, type EventAction } from '../proxy/decision-log.js'

export function createApiServer(
  config: RunnerConfig,
  catalogue: ProfileCatalogue,
  sandboxes: SandboxManager,
  log: ManagerLogger = { info: () => undefined, warn: (obj, msg) => console.warn(msg, obj) },
  broker?: ApprovalBroker,
): http.Server {
  const routes: Route[] = [
    {
      method: 'GET',
      pattern: /^\/v1\/network-profiles$/,
      handler: async (_req, res) => sendJson(res, 200, catalogue.list()),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/network-profiles/${ID}$`),
      handler: async (_req, res, [name]) => {
        const profile = catalogue.get(name as string)
        if (!profile)
          throw new HttpError(
            404,
            'unknown-profile',
            `unknown network profile "${name}"; known profiles: ${catalogue.names().join(', ')}`,
          )
        const detail: NetworkProfileDetail = {
          name: profile.name,
          description: profile.description,
          mode: profile.mode,
          includes: [...profile.includes],
          allow: profile.allow.map((r) => ({ ...r })),
          deny: profile.deny.map((r) => ({ ...r })),
          endpoints: profile.endpoints.map((e) => ({
            host: e.host,
            from: e.from,
            rules: e.rules.map((r) => ({
              methods: [...r.methods],
              path: r.path,
              action: r.action,
            })),
          })),
          inspect: [...profile.inspect],
        }
        sendJson(res, 200, detail)
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/sandboxes$/,
      handler: async (req, res) => {
        const { request, policy } = parseCreateRequest(await readJson(req), config)
        sendJson(res, 201, await sandboxes.create(request, policy))
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/sandboxes$/,
      handler: async (_req, res) => sendJson(res, 200, await sandboxes.list()),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/sandboxes/${ID}$`),
      handler: async (_req, res, [id]) => sendJson(res, 200, await sandboxes.get(id as string)),
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`^/v1/sandboxes/${ID}$`),
      handler: async (_req, res, [id]) => {
        await sandboxes.destroy(id as string)
        sendJson(res, 200, { id, destroyed: true })
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/network-events$`),
      handler: async (req, res, [id]) => {
        const params = queryParams(req)
        const action = params.get('action') as EventAction | null
        if (action !== null && !EVENT_ACTIONS.includes(action))
          throw new HttpError(400, 'invalid-action', `action must be ${EVENT_ACTIONS.join(', ')}`)
        const since = params.get('since')
        const events = await sandboxes.networkEvents(id as string, {
          ...(action ? { action } : {}),
          limit: limitParam(params, 100, 10_000),
          ...(since ? { since } : {}),
        })
        sendJson(res, 200, { events })
      },
    },
    {
      method: 'PUT',
      pattern: new RegExp(`^/v1/sandboxes/${ID}/network$`),
      handler: async (req, res, [id]) =>
        sendJson(
          res,
          200,
          await sandboxes.updateNetwork(id as string, parseUpdateNetwork(await readJson(req))),
        ),
    },
    ...processRoutes(sandboxes, new ProcessTable(log)),
    ...(broker ? approvalRoutes(broker, sandboxes, catalogue) : []),
    ...fileRoutes(sandboxes, config.maxFileBytes),
  ]

  return http.createServer({ headersTimeout: 20_000, requestTimeout: 0 }, (req, res) => {
    void route(req, res).catch((err: unknown) => {
      if (res.headersSent) return res.destroy()
      if (err instanceof HttpError) sendError(res, err)
      else if (err instanceof SandboxError)
        sendError(res, new HttpError(err.status, err.code, err.message))
      else sendError(res, new HttpError(500, 'internal', (err as Error)?.message ?? String(err)))
    })
  })

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] as string
    if (path === '/healthz' && req.method === 'GET') {
      sendJson(res, 200, { ok: true })
      return
    }
    if (config.apiKey !== undefined && !hasBearer(req, config.apiKey)) {
      throw new HttpError(
        401,
        'unauthorized',
        'missing or wrong API key: send Authorization: Bearer <ISORUN_API_KEY>',
      )
    }
    let pathMatched = false
    for (const r of routes) {
      const m = r.pattern.exec(path)
      if (!m) continue
      pathMatched = true
      if (r.method !== req.method) continue
      await r.handler(req, res, m.slice(1))
      return
    }
    if (pathMatched)
      throw new HttpError(405, 'method-not-allowed', `${req.method} is not supported on ${path}`)
    throw new HttpError(404, 'not-found', `no route ${req.method} ${path}; the API lives under /v1`)
  }
}
