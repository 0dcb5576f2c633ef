// The Isorun SDK: creates sandboxes with their egress proxy through the
// runner API, runs commands in them, reads their network decisions and
// destroys them. HTTP only (Node's built-in fetch); no server-side code.

import type {
  ApiErrorBody,
  CreateSandboxRequest,
  ExecRequest,
  ExecResult,
  NetworkEvent,
  NetworkEventsQuery,
  NetworkPolicy,
  NetworkProfileDetail,
  NetworkProfileSummary,
  SandboxInfo,
  UpdateNetworkRequest,
} from './types.js'

export const DEFAULT_URL = 'http://127.0.0.1:8080'

/** Every error the SDK throws. `code` is the API's error code or one of the SDK's own. */
export class IsorunError extends Error {
  override readonly name: string = 'IsorunError'
  constructor(
    message: string,
    readonly code: string,
    /** HTTP status of the API response, when there was one. */
    readonly status?: number,
    readonly details?: unknown,
  ) {
    super(message)
  }
}

/** Arguments the SDK refuses before sending anything (e.g. both networkProfile and network). */
export class IsorunUsageError extends IsorunError {
  override readonly name = 'IsorunUsageError'
  constructor(message: string, code = 'invalid-argument') {
    super(message, code)
  }
}

/** The runner answered with an error. */
export class IsorunApiError extends IsorunError {
  override readonly name = 'IsorunApiError'
}

/** The runner could not be reached, or did not answer in time. */
export class IsorunConnectionError extends IsorunError {
  override readonly name = 'IsorunConnectionError'
}

export interface IsorunOptions {
  /** Runner API URL; default ISORUN_URL, then http://127.0.0.1:8080. */
  url?: string
  /** Bearer token; default ISORUN_API_KEY. */
  apiKey?: string
  /** Per-request timeout for API calls other than exec; default 120 s. */
  timeoutMs?: number
}

export type CreateOptions = CreateSandboxRequest

export interface ExecOptions {
  env?: Record<string, string>
  cwd?: string
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

  /** @internal Sends one API request; errors become IsorunError subclasses. */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    let response: Response
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      const cause = err as Error & { cause?: { code?: string } }
      if (cause.name === 'TimeoutError') {
        throw new IsorunConnectionError(
          `${method} ${path}: the runner at ${this.url} did not answer within ${timeoutMs} ms`,
          'timeout',
        )
      }
      throw new IsorunConnectionError(
        `cannot reach the isorun runner at ${this.url} (${cause.cause?.code ?? cause.message}); is it running (docker compose up -d) and is ISORUN_URL right?`,
        'unreachable',
      )
    }
    const text = await response.text()
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
    if (!response.ok) {
      const error = (parsed as ApiErrorBody | undefined)?.error
      throw new IsorunApiError(
        error?.message ?? `${method} ${path} failed with HTTP ${response.status}`,
        error?.code ?? `http-${response.status}`,
        response.status,
        error?.details,
      )
    }
    return parsed as T
  }
}

export class Sandbox {
  constructor(
    private readonly client: Isorun,
    /** What the runner said when this object was made; `refresh()` updates it. */
    public info: SandboxInfo,
  ) {}

  get id(): string {
    return this.info.id
  }

  /** Runs a command: a string under `/bin/sh -c`, an array as is. */
  exec(cmd: string | string[], options: ExecOptions = {}): Promise<ExecResult> {
    if (
      typeof cmd !== 'string' &&
      !(Array.isArray(cmd) && cmd.length > 0 && cmd.every((c) => typeof c === 'string'))
    ) {
      return Promise.reject(
        new IsorunUsageError('exec: cmd must be a string or a non-empty array of strings'),
      )
    }
    const body: ExecRequest = { cmd, ...options }
    // The HTTP call may take as long as the command; leave room beyond its own timeout.
    const wait = (options.timeoutMs ?? 10 * 60_000) + 30_000
    return this.client.request<ExecResult>(
      'POST',
      `/v1/sandboxes/${encodeURIComponent(this.id)}/exec`,
      body,
      wait,
    )
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
