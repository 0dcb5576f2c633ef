// The Isorun SDK: creates sandboxes with their egress proxy through the
// runner API, runs commands in them (streamed), moves files in and out, reads
// their network decisions and destroys them. HTTP only (Node's built-in
// fetch); no dependencies, no server-side code.

import {
  answerApproval,
  handleApprovals,
  streamApprovals,
  type Approval,
  type ApprovalHandler,
  type ApprovalSubscription,
} from './approvals.js'
import { IsorunApiError, IsorunConnectionError, IsorunError, IsorunUsageError } from './errors.js'
import { SandboxFiles } from './files.js'
import { collectOutput, SandboxProcess } from './process.js'
import type {
  ApiErrorBody,
  ApprovalDecisionRequest,
  ApprovalResult,
  SandboxBudgets,
  PendingApproval,
  SuggestedProfile,
  CreateSandboxRequest,
  ExecResult,
  NetworkEvent,
  NetworkEventsQuery,
  NetworkPolicy,
  NetworkProfileDetail,
  NetworkProfileSummary,
  SandboxInfo,
  SpawnRequest,
  UpdateNetworkRequest,
} from './types.js'

export const DEFAULT_URL = 'http://127.0.0.1:8080'

export interface IsorunOptions {
  /** Runner API URL; default ISORUN_URL, then http://127.0.0.1:8080. */
  url?: string
  /** Bearer token; default ISORUN_API_KEY. */
  apiKey?: string
  /** Per-request timeout for API calls other than exec; default 120 s. */
  timeoutMs?: number
}

export type CreateOptions = CreateSandboxRequest

export interface SpawnOptions {
  env?: Record<string, string>
  /** Absolute working directory in the sandbox. */
  cwd?: string
  /** The command is killed (with its whole process group) after this long; default 10 minutes. */
  timeoutMs?: number
  /** Keep stdin open for `write()` and `end()`; without it the command reads end-of-file. */
  stdin?: boolean
}

export interface ExecOptions extends Omit<SpawnOptions, 'stdin'> {
  /** Written to the command's stdin, which is then closed. */
  stdin?: string | Uint8Array
  /** stdout and stderr are each kept up to this many bytes (`truncated` beyond); default 10 MiB. */
  maxOutputBytes?: number
}

/** Options of `Isorun.open`: a raw request whose response is read as a stream. */
export interface OpenOptions {
  json?: unknown
  /** A raw body, sent as application/octet-stream. */
  body?: Uint8Array | ReadableStream<Uint8Array>
  /** Until the response headers arrive; 0 for no limit. Default: the client's timeoutMs. */
  timeoutMs?: number
}

function env(name: string): string | undefined {
  const value = typeof process !== 'undefined' ? process.env[name] : undefined
  return value === '' ? undefined : value
}

/** `networkProfile` and `network` are mutually exclusive; checked before any request. */
function checkNetworkChoice(
  input: { networkProfile?: unknown; network?: unknown },
  what: string,
): void {
  if (input.networkProfile !== undefined && input.network !== undefined) {
    throw new IsorunUsageError(
      `${what}: give either networkProfile or network, not both`,
      'conflicting-network',
    )
  }
  if (
    input.networkProfile !== undefined &&
    (typeof input.networkProfile !== 'string' || input.networkProfile === '')
  ) {
    throw new IsorunUsageError(`${what}: networkProfile must be a profile name`)
  }
  if (
    input.network !== undefined &&
    (typeof input.network !== 'object' || input.network === null || Array.isArray(input.network))
  ) {
    throw new IsorunUsageError(`${what}: network must be an object such as { allow: ['pypi.org'] }`)
  }
}

export class Isorun {
  readonly url: string
  private readonly apiKey: string | undefined
  private readonly timeoutMs: number

  constructor(options: IsorunOptions = {}) {
    this.url = (options.url ?? env('ISORUN_URL') ?? DEFAULT_URL).replace(/\/+$/, '')
    this.apiKey = options.apiKey ?? env('ISORUN_API_KEY')
    this.timeoutMs = options.timeoutMs ?? 120_000
  }

  /** The live profile catalogue of the runner. */
  networkProfiles(): Promise<NetworkProfileSummary[]> {
    return this.request<NetworkProfileSummary[]>('GET', '/v1/network-profiles')
  }

  /** One profile with its rules resolved. */
  networkProfile(name: string): Promise<NetworkProfileDetail> {
    return this.request<NetworkProfileDetail>(
      'GET',
      `/v1/network-profiles/${encodeURIComponent(name)}`,
    )
  }

  /** Creates a sandbox and its egress proxy. */
  async create(options: CreateOptions): Promise<Sandbox> {
    if (typeof options?.image !== 'string' || options.image === '')
      throw new IsorunUsageError('create: image is required')
    checkNetworkChoice(options, 'create')
    const info = await this.request<SandboxInfo>('POST', '/v1/sandboxes', options)
    return new Sandbox(this, info)
  }

  /** An existing sandbox, by id. */
  async get(id: string): Promise<Sandbox> {
    return new Sandbox(
      this,
      await this.request<SandboxInfo>('GET', `/v1/sandboxes/${encodeURIComponent(id)}`),
    )
  }

  async list(): Promise<Sandbox[]> {
    const infos = await this.request<SandboxInfo[]>('GET', '/v1/sandboxes')
    return infos.map((info) => new Sandbox(this, info))
  }

  /**
   * Requests held for an approval (`onUnknown: 'ask'`), across sandboxes or for
   * one, as they come: those already pending first. Answer each with
   * `allowOnce()`, `allowForSandbox({ ttlMs })` or `deny()`. Ends when `signal`
   * aborts or the loop breaks.
   */
  approvals(options: { sandbox?: string; signal?: AbortSignal } = {}): AsyncGenerator<Approval> {
    return streamApprovals(this, options)
  }

  /** The approvals pending now. */
  async pendingApprovals(options: { sandbox?: string } = {}): Promise<PendingApproval[]> {
    const query = options.sandbox ? `?sandbox=${encodeURIComponent(options.sandbox)}` : ''
    return (await this.request<{ approvals: PendingApproval[] }>('GET', `/v1/approvals${query}`))
      .approvals
  }

  /** Answers an approval by id (as `isorun approve` does). */
  answerApproval(id: string, request: ApprovalDecisionRequest): Promise<ApprovalResult> {
    if (!['once', 'sandbox', 'deny'].includes(request?.answer))
      throw new IsorunUsageError('answerApproval: answer must be once, sandbox or deny')
    return answerApproval(this, id, request)
  }

  /** @internal Sends one API request and parses its JSON answer; errors become IsorunError subclasses. */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const signal = AbortSignal.timeout(timeoutMs)
    const response = await this.fetch(
      method,
      path,
      body === undefined ? {} : { json: body },
      signal,
    )
    let text: string
    try {
      text = await response.text()
    } catch (err) {
      throw this.connectionError(method, path, err, timeoutMs)
    }
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      throw new IsorunApiError(
        `${method} ${path}: the runner answered ${response.status} with a body that is not JSON`,
        'bad-response',
        response.status,
      )
    }
    return parsed as T
  }

  /**
   * @internal Sends one API request and returns the response for its body to
   * be streamed; `timeoutMs` bounds only the wait for the response headers.
   */
  async open(method: string, path: string, options: OpenOptions = {}): Promise<Response> {
    const limit = options.timeoutMs ?? this.timeoutMs
    const controller = new AbortController()
    const timer =
      limit > 0
        ? setTimeout(() => controller.abort(new DOMException('timeout', 'TimeoutError')), limit)
        : undefined
    try {
      return await this.fetch(method, path, options, controller.signal, limit)
    } finally {
      clearTimeout(timer)
    }
  }

  private async fetch(
    method: string,
    path: string,
    options: Omit<OpenOptions, 'timeoutMs'>,
    signal: AbortSignal,
    timeoutMs = this.timeoutMs,
  ): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`
    let body: string | Uint8Array | ReadableStream<Uint8Array> | undefined
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json'
      body = JSON.stringify(options.json)
    } else if (options.body !== undefined) {
      headers['Content-Type'] = 'application/octet-stream'
      body = options.body
    }
    let response: Response
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers,
        signal,
        ...(body !== undefined ? { body, duplex: 'half' } : {}),
      } as RequestInit)
    } catch (err) {
      throw this.connectionError(method, path, err, timeoutMs)
    }
    if (!response.ok) throw await apiError(method, path, response)
    return response
  }

  private connectionError(
    method: string,
    path: string,
    err: unknown,
    timeoutMs: number,
  ): IsorunConnectionError {
    const cause = err as Error & { cause?: { code?: string } }
    if (cause.name === 'TimeoutError' || cause.name === 'AbortError') {
      return new IsorunConnectionError(
        `${method} ${path}: the runner at ${this.url} did not answer within ${timeoutMs} ms`,
        'timeout',
      )
    }
    return new IsorunConnectionError(
      `cannot reach the isorun runner at ${this.url} (${cause.cause?.code ?? cause.message}); is it running (docker compose up -d) and is ISORUN_URL right?`,
      'unreachable',
    )
  }
}

async function apiError(method: string, path: string, response: Response): Promise<IsorunError> {
  const text = await response.text().catch(() => '')
  let error: ApiErrorBody['error'] | undefined
  try {
    error = (JSON.parse(text) as ApiErrorBody | undefined)?.error
  } catch {
    // not JSON: the status says enough
  }
  return new IsorunApiError(
    error?.message ?? `${method} ${path} failed with HTTP ${response.status}`,
    error?.code ?? `http-${response.status}`,
    response.status,
    error?.details,
  )
}

/** Errors of a stdin write to a command that has already ended. */
const STDIN_GONE: ReadonlySet<string> = new Set([
  'process-not-found',
  'process-exited',
  'stdin-closed',
])

function checkCommand(cmd: unknown, what: string): void {
  if (
    typeof cmd !== 'string' &&
    !(Array.isArray(cmd) && cmd.length > 0 && cmd.every((c) => typeof c === 'string'))
  ) {
    throw new IsorunUsageError(`${what}: cmd must be a string or a non-empty array of strings`)
  }
}

export class Sandbox {
  /** Files in the sandbox: read, write, list, remove, upload and download. */
  readonly files: SandboxFiles

  constructor(
    private readonly client: Isorun,
    /** What the runner said when this object was made; `refresh()` updates it. */
    public info: SandboxInfo,
  ) {
    this.files = new SandboxFiles(client, info.id)
  }

  get id(): string {
    return this.info.id
  }

  /**
   * Starts a command (a string under `/bin/sh -c`, an array as is) and returns
   * once it runs: its output streams as it comes (`stdout`, `stderr`), `write()`
   * and `end()` feed its stdin, `wait()` gives how it ended, `kill()` stops it
   * with everything it started.
   */
  async spawn(cmd: string | string[], options: SpawnOptions = {}): Promise<SandboxProcess> {
    checkCommand(cmd, 'spawn')
    const body: SpawnRequest = { cmd, ...options }
    const response = await this.client.open(
      'POST',
      `/v1/sandboxes/${encodeURIComponent(this.id)}/processes`,
      { json: body },
    )
    return SandboxProcess.start(this.client, this.id, response)
  }

  /** Runs a command to its end and returns its output: `spawn()`, collected. */
  async exec(cmd: string | string[], options: ExecOptions = {}): Promise<ExecResult> {
    const { stdin, maxOutputBytes = 10 * 1024 * 1024, ...spawnOptions } = options
    checkCommand(cmd, 'exec')
    const process = await this.spawn(cmd, { ...spawnOptions, stdin: stdin !== undefined })
    const stdout = collectOutput(process.stdout, maxOutputBytes)
    const stderr = collectOutput(process.stderr, maxOutputBytes)
    if (stdin !== undefined) {
      // A command that exits without reading its input is not an error (as with a shell pipe).
      await process
        .write(stdin)
        .then(() => process.end())
        .catch((err: unknown) => {
          if (!(err instanceof IsorunApiError && STDIN_GONE.has(err.code))) throw err
        })
    }
    const result = await process.wait()
    const [out, err] = [await stdout, await stderr]
    return {
      exitCode: result.exitCode,
      stdout: out.text,
      stderr: err.text,
      ...(result.timedOut ? { timedOut: true } : {}),
      ...(out.truncated || err.truncated ? { truncated: true } : {}),
    }
  }

  /** Recent decisions of this sandbox's egress proxy, oldest first. */
  async networkEvents(query: NetworkEventsQuery = {}): Promise<NetworkEvent[]> {
    const params = new URLSearchParams()
    if (query.action) params.set('action', query.action)
    if (query.limit !== undefined) params.set('limit', String(query.limit))
    if (query.since) params.set('since', query.since)
    const suffix = params.size > 0 ? `?${params.toString()}` : ''
    const result = await this.client.request<{ events: NetworkEvent[] }>(
      'GET',
      `/v1/sandboxes/${encodeURIComponent(this.id)}/network-events${suffix}`,
    )
    return result.events
  }

  /**
   * A profile learned from what this sandbox used (run it in report mode, or
   * with a strict profile and read its refusals): YAML ready to save as
   * NAME.yaml, with `diff` against `base` when given.
   */
  suggestProfile(options: { base?: string; name?: string } = {}): Promise<SuggestedProfile> {
    const params = new URLSearchParams()
    if (options.base) params.set('base', options.base)
    if (options.name) params.set('name', options.name)
    const suffix = params.size > 0 ? `?${params.toString()}` : ''
    return this.client.request<SuggestedProfile>(
      'GET',
      `/v1/sandboxes/${encodeURIComponent(this.id)}/suggested-profile${suffix}`,
    )
  }

  /** Usage of each budget (`limits`) of the sandbox's policy, and per destination. */
  budgets(): Promise<SandboxBudgets> {
    return this.client.request('GET', `/v1/sandboxes/${encodeURIComponent(this.id)}/budgets`)
  }

  /**
   * Answers this sandbox's held requests with `handler`: return `'once'`,
   * `'sandbox'`, `'deny'` or `{ answer, ttlMs }`, or nothing to leave one
   * pending. `stop()` ends it.
   */
  onApproval(handler: ApprovalHandler): ApprovalSubscription {
    if (typeof handler !== 'function')
      throw new IsorunUsageError('onApproval: handler must be a function')
    return handleApprovals(this.client, this.id, handler)
  }

  /** Replaces the sandbox's network policy live: new connections follow it. */
  async updateNetwork(
    update: { networkProfile: string } | { network: NetworkPolicy },
  ): Promise<SandboxInfo> {
    checkNetworkChoice(update as UpdateNetworkRequest, 'updateNetwork')
    const u = update as UpdateNetworkRequest
    if (u.networkProfile === undefined && u.network === undefined) {
      throw new IsorunUsageError('updateNetwork: give networkProfile or network')
    }
    this.info = await this.client.request<SandboxInfo>(
      'PUT',
      `/v1/sandboxes/${encodeURIComponent(this.id)}/network`,
      update,
    )
    return this.info
  }

  async refresh(): Promise<SandboxInfo> {
    this.info = await this.client.request<SandboxInfo>(
      'GET',
      `/v1/sandboxes/${encodeURIComponent(this.id)}`,
    )
    return this.info
  }

  /** Removes the sandbox, its proxy and its network. Destroying twice is not an error. */
  async destroy(): Promise<void> {
    try {
      await this.client.request<unknown>('DELETE', `/v1/sandboxes/${encodeURIComponent(this.id)}`)
    } catch (err) {
      if (err instanceof IsorunApiError && err.status === 404) return
      throw err
    }
  }
}
