// The runner API's wire types: what the SDK sends and receives. The runner
// imports these too, so the two cannot drift apart; nothing here may import
// server-side code.

/**
 * `report` allows what `allow-all` allows and records, for each decision, what
 * the rules (read as an allow list) would have decided: `wouldDeny` on events.
 */
export type NetworkMode = 'allow-all' | 'deny-all' | 'allow-list' | 'report'

/** A budget for the destinations a rule pattern covers, over the sandbox's lifetime or a rolling window. */
export interface LimitInput {
  /** Bytes sent: a number or a size such as `'10MB'`, `'512KiB'`. */
  upload?: number | string
  /** Bytes received. */
  download?: number | string
  /** Requests (HTTP requests the proxy read, otherwise connections). */
  requests?: number
  /** A rolling window such as `'1h'`, `'10m'`; `'lifetime'` (the default) for the sandbox's lifetime. */
  window?: string
}

/** An explicit network policy, instead of a named profile. */
export interface NetworkPolicy {
  /** Default `allow-list`: only what `allow` (and the includes) name is reachable. */
  mode?: NetworkMode
  /** Profiles whose rules are merged in, e.g. `['pypi']`. */
  include?: string[]
  allow?: string[]
  deny?: string[]
  /** Per-host method/path rules, e.g. `{ 'api.github.com': [{ methods: ['GET'], path: '/repos/**', action: 'allow' }] }`. */
  endpoints?: Record<string, EndpointRuleInput[]>
  /** Intercept TLS to the hosts `allow` allows, so every request is decided and logged. */
  inspect?: boolean
  /** `ask` (allow-list mode only): hold a request that no rule allows and ask for an approval. */
  onUnknown?: 'deny' | 'ask'
  /** How long a held request waits for an answer; default 30 000. A timeout is a deny. */
  approvalTimeoutMs?: number
  /** Budgets per rule pattern: `{ 'api.example.com': { upload: '10MB', window: '1h' } }`. */
  limits?: Record<string, LimitInput>
}

/** An endpoint rule as written: no methods means any method, no path means `/**`. */
export interface EndpointRuleInput {
  methods?: string[]
  path?: string
  action: 'allow' | 'deny'
}

/** A summary in the profile catalogue. */
export interface NetworkProfileSummary {
  name: string
  description: string
  mode: NetworkMode
}

export interface ResolvedRule {
  rule: string
  /** The profile the rule came from (through includes). */
  from: string
}

export interface EndpointRuleInfo {
  methods: string[]
  path: string
  action: 'allow' | 'deny'
}

/** A profile with its includes resolved. */
export interface NetworkProfileDetail extends NetworkProfileSummary {
  includes: string[]
  allow: ResolvedRule[]
  deny: ResolvedRule[]
  endpoints: { host: string; from: string; rules: EndpointRuleInfo[] }[]
  /** This profile and included ones marked `inspect: true` (TLS to what they allow is intercepted). */
  inspect: string[]
}

export interface SandboxResources {
  /** Memory limit in MiB. */
  memoryMb?: number
  /** CPUs, fractional allowed (e.g. 0.5). */
  cpus?: number
  /** Maximum number of processes. */
  pids?: number
}

export interface CreateSandboxRequest {
  image: string
  /** A named profile; mutually exclusive with `network`. */
  networkProfile?: string
  /** An explicit policy; mutually exclusive with `networkProfile`. */
  network?: NetworkPolicy
  env?: Record<string, string>
  resources?: SandboxResources
  /** Destroy the sandbox this long after creation. */
  timeoutMs?: number
  /**
   * Names of secrets the operator defined in the runner. The sandbox's env holds a
   * placeholder for each; the proxy puts the value in for the secret's hosts only.
   */
  secrets?: string[]
}

export type SandboxStatus = 'running' | 'proxy-down' | 'stopped'

export interface SandboxInfo {
  id: string
  image: string
  status: SandboxStatus
  /** The profile in force, or `custom` for an explicit network policy. */
  networkProfile: string
  network?: NetworkPolicy
  createdAt: string
  expiresAt: string | null
  /** The sandbox-facing address of its egress proxy. */
  proxyAddress: string
  /** Names of the secrets it was created with (never their values). */
  secrets?: string[]
}

export interface ExecRequest {
  /** A string runs under `/bin/sh -c`; an array runs as is. */
  cmd: string | string[]
  env?: Record<string, string>
  cwd?: string
  timeoutMs?: number
}

/** `POST /v1/sandboxes/:id/processes`: a command whose output streams back as it runs. */
export interface SpawnRequest extends ExecRequest {
  /** Keep the command's stdin open for writes (default: it reads end-of-file at once). */
  stdin?: boolean
}

/** Signals a process can be sent. */
export type SignalName =
  'SIGTERM' | 'SIGKILL' | 'SIGINT' | 'SIGHUP' | 'SIGQUIT' | 'SIGUSR1' | 'SIGUSR2'

/**
 * One line of the NDJSON stream that `POST /v1/sandboxes/:id/processes` answers
 * with: `start` first, then output and heartbeats, then `exit` or `error` last.
 */
export type ProcessStreamEvent =
  | { type: 'start'; id: string; pid: number }
  /** `data` is base64: output is bytes, not necessarily text. */
  | { type: 'stdout'; data: string }
  | { type: 'stderr'; data: string }
  /** Sent every 15 s while nothing else is, so idle connections stay up. */
  | { type: 'heartbeat' }
  | { type: 'exit'; exitCode: number; timedOut: boolean }
  | { type: 'error'; error: { code: string; message: string } }

/** How a process ended. */
export interface ProcessResult {
  exitCode: number
  /** True when the command ran past its timeout and was killed; exitCode is then 124. */
  timedOut: boolean
}

export interface ExecResult {
  exitCode: number
  stdout: string
  stderr: string
  /** True when the command ran past its timeout; exitCode is then 124. */
  timedOut?: boolean
  /** True when stdout or stderr was cut at the output limit. */
  truncated?: boolean
}

/** One decision of a sandbox's egress proxy. */
export interface NetworkEvent {
  time: string
  sandbox: string
  profile: string
  protocol: 'http' | 'connect' | 'socks' | 'tls' | 'dns'
  host: string
  port: number
  sni?: string
  method?: string
  path?: string
  /** HTTP status of the response, for requests the proxy read (plain or intercepted HTTP). */
  status?: number
  qtype?: string
  action: 'allow' | 'deny'
  rule: string | null
  reason: string
  detail?: string
  /** Report mode: allowed, but the rules would have refused it for this reason. */
  wouldDeny?: { reason: string; rule: string | null; detail?: string }
  /** Set when the request was held for an approval: the answer and who gave it. */
  approval?: { id: string; answer: ApprovalAnswer; by: string }
  /** The budget this destination counts against, with its usage after this decision. */
  budget?: BudgetUsage
  client?: string
  address?: string
  error?: string
  bytesUp: number
  bytesDown: number
  durationMs: number
}

/** Usage of one budget (a `limits` pattern) and its limits. */
export interface BudgetUsage {
  /** The limit's pattern, canonical. */
  pattern: string
  up: number
  down: number
  requests: number
  limits: { upload?: number; download?: number; requests?: number; windowMs?: number }
  exceeded: boolean
}

/** `GET /v1/sandboxes/:id/budgets`: each budget's usage, and lifetime usage per destination. */
export interface SandboxBudgets {
  budgets: BudgetUsage[]
  destinations: {
    destination: string
    pattern: string
    up: number
    down: number
    requests: number
  }[]
}

/** `'once'`: this connection; `'sandbox'`: a rule added live (with a TTL if given); `'deny'`; `'timeout'` counts as deny. */
export type ApprovalAnswer = 'once' | 'sandbox' | 'deny' | 'timeout'

/** A request held by a sandbox's proxy until someone answers it. */
export interface PendingApproval {
  /** Unique across the runner: answer with `POST /v1/approvals/:id`. */
  id: string
  sandbox: string
  protocol: 'http' | 'connect' | 'socks' | 'tls' | 'dns'
  host: string
  /** 0 for a DNS question. */
  port: number
  method?: string
  path?: string
  /** The rule an approval for the sandbox would add, e.g. `api.example.com` or `db.example.com:5432`. */
  rule: string
  /** How many held requests wait on this one answer (identical requests share it). */
  waiting: number
  createdAt: string
  expiresAt: string
}

/** `POST /v1/approvals/:id`. */
export interface ApprovalDecisionRequest {
  answer: 'once' | 'sandbox' | 'deny'
  /** For `sandbox`: the live rule expires after this many milliseconds. */
  ttlMs?: number
  /** Who answers, for the log; the runner adds how (`api`, `webhook`, `cli`). */
  by?: string
}

/** What answering an approval did. */
export interface ApprovalResult {
  id: string
  answer: 'once' | 'sandbox' | 'deny'
  by: string
  /** The live rule added for a `sandbox` answer. */
  rule?: string
  expiresAt?: string | null
}

/** `GET /v1/sandboxes/:id/suggested-profile`: a profile learned from the sandbox's decisions. */
export interface SuggestedProfile {
  name: string
  /** The profile as commented YAML, ready to save as NAME.yaml. */
  yaml: string
  include: string[]
  allow: SuggestedRule[]
  /** Against `base`: rules the learned profile adds and base rules it does not need. */
  diff?: { base: string; added: string[]; unused: string[] }
}

export interface SuggestedRule {
  rule: string
  /** Why: the hosts it covers, how often they were used and when first. */
  hosts: string[]
  count: number
  firstSeen: string
}

export interface NetworkEventsQuery {
  /**
   * `would-deny`: report-mode decisions that the rules would have refused;
   * `blocked`: those and the refusals together, in order.
   */
  action?: 'allow' | 'deny' | 'would-deny' | 'blocked'
  limit?: number
  /** Only events after this ISO time. */
  since?: string
}

export interface UpdateNetworkRequest {
  networkProfile?: string
  network?: NetworkPolicy
}

export type FileType = 'file' | 'directory' | 'symlink' | 'other'

/** One entry of `GET /v1/sandboxes/:id/files/list`. */
export interface FileEntry {
  name: string
  type: FileType
  size: number
  /** Permission bits (e.g. 0o644). */
  mode: number
  /** Last modification, ISO time. */
  mtime: string
  /** Where a symlink points, as the sandbox resolves it. */
  linkTarget?: string
}

/** Every error response: `{ error: { code, message } }`. */
export interface ApiErrorBody {
  error: { code: string; message: string; details?: unknown }
}
