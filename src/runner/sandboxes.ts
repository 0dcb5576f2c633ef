// Sandboxes on Docker, with exactly the topology of DESIGN.md:
//
//   isorun-sbx-<id>          internal network, no gateway address on the host (inhibit_ipv4),
//                            so the sandbox can reach nothing but its proxy: not the host,
//                            not the runner, not other sandboxes
//   isorun-sbx-<id>-proxy    the egress proxy: listeners on the sandbox network (a fixed
//                            address), admin API on the egress network, policy pushed by us
//   isorun-sbx-<id>          the sandbox container: only on the internal network, the proxy
//                            as DNS, proxy variables set, no added capabilities
//   isorun-sbx-<id>-ca       volume with what the sandbox trusts (its image's roots plus its
//                            own CA), read-only in the sandbox, filled through a writer
//                            container (isorun-sbx-<id>-trust, never started, removed after)
//
// Each sandbox has its own interception CA. Its key stays on the egress side: the
// runner's state directory (mode 0600) and the proxy's memory, sent through the
// admin API like the secrets' values. The sandbox sees the CA certificate and a
// placeholder per secret, never a key or a value.
//
// The runner keeps no database: every object carries labels, and the runner's
// view is rebuilt from them on start (removing orphans). Create is
// all-or-nothing. Objects also carry the runner's id (stable across its
// restarts) and its boot id (new at every start): a restarted runner removes
// the half-made sandboxes of its dead predecessor at once, and leaves other
// runners' objects on the same engine alone.
//
// Both containers restart with the engine (restart policy unless-stopped): the
// proxy comes back refusing everything until the runner, which follows the
// engine's events (docker-watch.ts), sends it its policy again.

import { randomBytes } from 'node:crypto'
import {
  compilePolicy,
  PolicyError,
  type OperatorSettings,
  type PolicySpec,
} from '../policy/index.js'
import {
  networkPolicySpec,
  NetworkSpecError,
  policySpecOf,
  type ProfileCatalogue,
} from '../profiles/index.js'
import type {
  CreateSandboxRequest,
  NetworkEvent,
  NetworkEventsQuery,
  NetworkPolicy,
  SandboxInfo,
  SandboxStatus,
} from 'isorun'
import type { InterceptionSettings } from '../proxy/interception.js'
import { newPlaceholder, type SecretBinding } from '../secrets/binding.js'
import { createCertificateAuthority } from '../tls/ca.js'
import { sandboxTrust } from '../tls/sandbox-trust.js'
import type { RunnerConfig } from './config.js'
import {
  LABEL,
  networkName,
  PROXY_PORTS,
  proxyContainerSpec,
  proxyName,
  sandboxContainerSpec,
  sandboxName,
  sandboxNetworkSpec,
  trustVolumeName,
  trustVolumeSpec,
  trustWriterName,
} from './container-specs.js'
import {
  Docker,
  DockerError,
  dockerMessage,
  ensureImage,
  isNotFound,
  removeContainer,
  removeNetwork,
  removeVolume,
} from './docker.js'
import { DockerWatch } from './docker-watch.js'
import { ProxyAdmin } from './proxy-admin.js'
import { SandboxStateStore, type SandboxState } from './sandbox-state.js'
import { readImageBundle, writeTrustFiles } from './trust-volume.js'
import { SubnetPool, type SandboxSubnet } from './subnets.js'

/** What a sandbox's policy was asked for as: a profile name or an explicit network policy. */
export type PolicyRequest =
  { readonly networkProfile: string } | { readonly network: NetworkPolicy }

/** An API-level failure: the runner's HTTP layer turns it into `{ error: { code, message } }`. */
export class SandboxError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

interface SandboxRecord {
  readonly id: string
  readonly image: string
  readonly createdAt: string
  readonly expiresAt: string | null
  readonly proxyIp: string
  /** Replaced when the proxy restarts (its egress address may change). */
  admin: ProxyAdmin
  readonly secrets: readonly string[]
  policy: PolicyRequest
}

/**
 * How old an incomplete sandbox without a runner label (made by an older runner) must be
 * before recovery removes it: it may be another runner's create in progress.
 */
const INCOMPLETE_GRACE_MS = 60_000
/** How often the runner looks for leftovers (a create or destroy the engine failed half-way). */
const RECONCILE_INTERVAL_MS = 60_000
const PROXY_START_TIMEOUT_MS = 20_000

function policyLabel(request: PolicyRequest): Record<string, string> {
  return 'networkProfile' in request
    ? { [LABEL.profile]: request.networkProfile }
    : { [LABEL.profile]: 'custom', [LABEL.network]: JSON.stringify(request.network) }
}

function policyFromLabels(labels: Record<string, string>): PolicyRequest {
  const custom = labels[LABEL.network]
  if (custom) return { network: JSON.parse(custom) as NetworkPolicy }
  return { networkProfile: labels[LABEL.profile] ?? 'locked-down' }
}

/** Serialises subnet allocation: two creates must not pick the same subnet. */
class Mutex {
  private tail: Promise<void> = Promise.resolve()
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn)
    this.tail = result.then(
      () => undefined,
      () => undefined,
    )
    return result
  }
}

export interface ManagerLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

/** What recovery found on the engine. */
export interface RecoveryResult {
  readonly adopted: number
  readonly removed: number
  /** Sandboxes of other runners on the same engine, left alone. */
  readonly foreign: number
}

export class SandboxManager {
  private readonly records = new Map<string, SandboxRecord>()
  /** Ids with a create or destroy in progress: their pieces are not leftovers. */
  private readonly busy = new Set<string>()
  /** New at every start: tells this process's objects from its predecessors'. */
  private readonly boot = randomBytes(6).toString('hex')
  private readonly subnets: SubnetPool
  private readonly allocation = new Mutex()
  /** One scan of the engine at a time (start-up recovery, reconnects, the periodic one). */
  private readonly scanning = new Mutex()
  private sweeper: NodeJS.Timeout | undefined
  private reconciler: NodeJS.Timeout | undefined
  private watch: DockerWatch | undefined
  private readonly operator: OperatorSettings
  private readonly state: SandboxStateStore

  constructor(
    private readonly docker: Docker,
    private readonly config: RunnerConfig,
    private readonly catalogue: ProfileCatalogue,
    private readonly log: ManagerLogger,
  ) {
    this.subnets = new SubnetPool(config.subnetPool, config.subnetPrefix)
    this.operator = { allowSpecial: config.allowPrivate }
    this.state = SandboxStateStore.of(config.stateDir)
  }

  /** A new CA and a placeholder per secret for a sandbox, kept in the state directory. */
  private async newSandboxState(id: string, secrets: readonly string[]): Promise<SandboxState> {
    const state: SandboxState = {
      ca: await createCertificateAuthority({ commonName: `isorun sandbox ${id}` }),
      secrets: secrets.map((name) => ({ name, placeholder: newPlaceholder(name) })),
    }
    this.state.save(id, state)
    return state
  }

  /** What a sandbox's proxy is sent through PUT /interception: the CA, the secrets with values, the upstream CAs. */
  private interceptionSettings(id: string, state: SandboxState): InterceptionSettings {
    const secrets: SecretBinding[] = []
    for (const { name, placeholder } of state.secrets) {
      const secret = this.config.secrets.find((s) => s.name === name)
      if (!secret) {
        this.log.warn(
          { sandbox: id, secret: name },
          'secret no longer defined in ISORUN_SECRETS_FILE; its placeholder stays as it is',
        )
        continue
      }
      secrets.push({
        name,
        placeholder,
        value: secret.value,
        hosts: secret.hosts,
        header: secret.header,
        scheme: secret.scheme,
      })
    }
    return {
      ca: state.ca,
      secrets,
      ...(this.config.upstreamCa ? { upstreamCa: this.config.upstreamCa } : {}),
    }
  }

  /** The resolved, validated policy for a request; 404 for an unknown profile, 400 for bad rules. */
  policySpec(request: PolicyRequest): PolicySpec {
    let spec: PolicySpec
    if ('networkProfile' in request) {
      const profile = this.catalogue.get(request.networkProfile)
      if (!profile) {
        throw new SandboxError(
          404,
          'unknown-profile',
          `unknown network profile "${request.networkProfile}"; known profiles: ${this.catalogue.names().join(', ')}`,
        )
      }
      spec = policySpecOf(profile)
    } else {
      try {
        spec = networkPolicySpec(request.network, this.catalogue)
      } catch (err) {
        if (err instanceof NetworkSpecError)
          throw new SandboxError(err.code === 'unknown-profile' ? 404 : 400, err.code, err.message)
        throw err
      }
    }
    try {
      compilePolicy(spec, this.operator)
    } catch (err) {
      if (err instanceof PolicyError) throw new SandboxError(400, 'invalid-network', err.message)
      throw err
    }
    return spec
  }

  /** Makes sure the egress network exists (when the runner runs outside Compose, nothing else creates it). */
  async ensureEgressNetwork(): Promise<void> {
    let network
    try {
      network = await this.docker.getNetwork(this.config.egressNetwork).inspect()
    } catch (err) {
      if (!isNotFound(err)) throw err
      await this.docker.createNetwork({
        Name: this.config.egressNetwork,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: { 'isorun.role': 'egress' },
      })
      this.log.info({ network: this.config.egressNetwork }, 'created the egress network')
      network = await this.docker.getNetwork(this.config.egressNetwork).inspect()
    }
    // The egress network holds the runner and every proxy's admin API, and the pool holds
    // the sandbox networks: proxies never connect there, whatever ISORUN_ALLOW_PRIVATE opens.
    const subnets = ((network.IPAM?.Config ?? []) as { Subnet?: string }[]).flatMap((c) =>
      c.Subnet ? [c.Subnet] : [],
    )
    this.blocked = [...subnets, this.config.subnetPool]
  }

  /** CIDR blocks every proxy refuses (isorun's own networks); set by ensureEgressNetwork(). */
  private blocked: string[] = []

  async create(request: CreateSandboxRequest, policy: PolicyRequest): Promise<SandboxInfo> {
    const spec = this.policySpec(policy)
    try {
      await ensureImage(this.docker, request.image, this.config.pullImages)
      await ensureImage(this.docker, this.config.proxyImage, false)
    } catch (err) {
      if (err instanceof DockerError) throw new SandboxError(502, err.code, err.message)
      throw err
    }

    const id = randomBytes(6).toString('hex')
    const createdAt = new Date().toISOString()
    const timeoutMs = request.timeoutMs ?? this.config.defaults.timeoutMs
    const expiresAt = timeoutMs > 0 ? new Date(Date.now() + timeoutMs).toISOString() : null
    const secrets = request.secrets ?? []
    const common = {
      [LABEL.sandbox]: id,
      [LABEL.created]: createdAt,
      [LABEL.expires]: expiresAt ?? '',
      [LABEL.runner]: this.config.runnerId,
      [LABEL.boot]: this.boot,
      ...policyLabel(policy),
      ...(secrets.length > 0 ? { [LABEL.secrets]: secrets.join(',') } : {}),
    }
    const started = Date.now()
    this.busy.add(id)
    try {
      // The CA is kept before the engine is asked for anything: a create stopped at any
      // engine step leaves it behind, and recovery finds it (see scan).
      const state = await this.newSandboxState(id, secrets)
      const subnet = await this.allocation.run(() => this.createNetwork(id, common))
      await this.docker.createVolume(trustVolumeSpec(id, common))
      const proxy = await this.createProxy(id, subnet, common)
      // The proxy starts and boots while the sandbox container is made and given its trust
      // files. Until the policy arrives the proxy refuses everything, and nothing runs in
      // the sandbox before create returns.
      const [admin] = await Promise.all([
        this.startProxy(proxy.container, proxy.token).then(async (admin) => {
          await admin.waitUntilHealthy(PROXY_START_TIMEOUT_MS)
          await admin.setPolicy(spec, policy)
          await admin.setInterception(this.interceptionSettings(id, state))
          return admin
        }),
        this.startSandbox(id, subnet, request, common, state),
      ])
      const record: SandboxRecord = {
        id,
        image: request.image,
        createdAt,
        expiresAt,
        proxyIp: subnet.proxy,
        admin,
        secrets,
        policy,
      }
      this.records.set(id, record)
      this.log.info(
        { sandbox: id, image: request.image, policy: spec.name, ms: Date.now() - started },
        'sandbox created',
      )
      return this.info(record, 'running')
    } catch (err) {
      // If the engine cannot remove them now (it is restarting), the next scan will.
      await this.removeAll(id).catch((removeErr: unknown) =>
        this.log.warn(
          { sandbox: id, error: dockerMessage(removeErr) },
          'could not remove a failed create yet; the next scan will',
        ),
      )
      if (err instanceof SandboxError) throw err
      throw new SandboxError(
        500,
        'create-failed',
        `creating the sandbox failed and everything made for it was removed: ${dockerMessage(err)}`,
      )
    } finally {
      this.busy.delete(id)
    }
  }

  private async createNetwork(id: string, labels: Record<string, string>): Promise<SandboxSubnet> {
    const used = new Set<string>()
    for (const net of await this.docker.listNetworks())
      for (const c of net.IPAM?.Config ?? []) if (c.Subnet) used.add(c.Subnet)
    for (const subnet of this.subnets.free(used)) {
      try {
        await this.docker.createNetwork(sandboxNetworkSpec(id, subnet, labels))
        return subnet
      } catch (err) {
        // Another network (not ours, or made since we listed) holds it: try the next one.
        if (/overlap/i.test(dockerMessage(err))) continue
        throw err
      }
    }
    throw new SandboxError(
      503,
      'no-subnet',
      `no free /${this.config.subnetPrefix} subnet left in ${this.config.subnetPool}; destroy sandboxes or set ISORUN_SUBNET_POOL`,
    )
  }

  /** Creates the proxy container and attaches it to the egress network; startProxy() starts it. */
  private async createProxy(
    id: string,
    subnet: SandboxSubnet,
    labels: Record<string, string>,
  ): Promise<{ container: ReturnType<Docker['getContainer']>; token: string }> {
    const token = randomBytes(24).toString('base64url')
    const container = await this.docker.createContainer(
      proxyContainerSpec({
        id,
        image: this.config.proxyImage,
        subnet,
        token,
        labels,
        logAllowed: this.config.logAllowed,
        allowPrivate: this.config.allowPrivate,
        blocked: this.blocked,
        extraHosts: this.config.proxyExtraHosts,
        dnsTtl: this.config.proxyDnsTtl,
      }),
    )
    try {
      await this.docker.getNetwork(this.config.egressNetwork).connect({ Container: container.id })
    } catch (err) {
      // Someone removed the egress network while we were running: make it again, once.
      if (!isNotFound(err)) throw err
      await this.ensureEgressNetwork()
      await this.docker.getNetwork(this.config.egressNetwork).connect({ Container: container.id })
    }
    return { container, token }
  }

  private async startProxy(
    container: ReturnType<Docker['getContainer']>,
    token: string,
  ): Promise<ProxyAdmin> {
    await container.start()
    const info = await container.inspect()
    const egressIp = info.NetworkSettings.Networks[this.config.egressNetwork]?.IPAddress
    if (!egressIp) throw new Error(`the proxy has no address on ${this.config.egressNetwork}`)
    return new ProxyAdmin(`http://${egressIp}:${PROXY_PORTS.admin}`, token)
  }

  private async startSandbox(
    id: string,
    subnet: SandboxSubnet,
    request: CreateSandboxRequest,
    labels: Record<string, string>,
    state: SandboxState,
  ): Promise<void> {
    const placeholders = Object.fromEntries(
      state.secrets.map(({ name, placeholder }) => [
        this.config.secrets.find((s) => s.name === name)?.env ?? name,
        placeholder,
      ]),
    )
    const container = await this.docker.createContainer(
      sandboxContainerSpec({
        id,
        subnet,
        request,
        defaults: this.config.defaults,
        labels,
        placeholders,
      }),
    )
    // The image's own roots, read before anything in it runs, then the sandbox's CA.
    const trustStarted = Date.now()
    const trust = sandboxTrust(state.ca.cert, await readImageBundle(container))
    await writeTrustFiles(this.docker, id, this.config.proxyImage, labels, trust.files)
    this.log.info(
      { sandbox: id, roots: trust.roots, ms: Date.now() - trustStarted },
      'sandbox trust files written',
    )
    await Promise.all([container.start(), removeContainer(this.docker, trustWriterName(id))])
  }

  /** Removes the sandbox, the proxy, the network, the trust volume and the kept CA; missing pieces are fine. */
  private async removeAll(id: string): Promise<void> {
    await Promise.all([
      removeContainer(this.docker, sandboxName(id)),
      removeContainer(this.docker, proxyName(id)),
      removeContainer(this.docker, trustWriterName(id)),
    ])
    await Promise.all([
      removeNetwork(this.docker, networkName(id)),
      removeVolume(this.docker, trustVolumeName(id)),
    ])
    this.state.remove(id)
  }

  async destroy(id: string): Promise<void> {
    const record = this.require(id)
    this.records.delete(id)
    this.busy.add(id)
    try {
      await this.removeAll(record.id)
    } catch (err) {
      // The engine failed (it may be restarting): the sandbox stays listed and destroy can
      // be retried, instead of its objects leaking out of the runner's view.
      this.records.set(id, record)
      throw err
    } finally {
      this.busy.delete(id)
    }
    this.log.info({ sandbox: id }, 'sandbox destroyed')
  }

  private require(id: string): SandboxRecord {
    const record = this.records.get(id)
    if (!record) throw new SandboxError(404, 'sandbox-not-found', `no sandbox "${id}"`)
    return record
  }

  private async status(id: string): Promise<SandboxStatus> {
    const running = async (name: string): Promise<boolean> => {
      try {
        return (await this.docker.getContainer(name).inspect()).State.Running
      } catch {
        return false
      }
    }
    const [sandbox, proxy] = await Promise.all([running(sandboxName(id)), running(proxyName(id))])
    if (!sandbox) return 'stopped'
    return proxy ? 'running' : 'proxy-down'
  }

  private info(record: SandboxRecord, status: SandboxStatus): SandboxInfo {
    return {
      id: record.id,
      image: record.image,
      status,
      networkProfile: 'networkProfile' in record.policy ? record.policy.networkProfile : 'custom',
      ...('network' in record.policy ? { network: record.policy.network } : {}),
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
      proxyAddress: record.proxyIp,
      ...(record.secrets.length > 0 ? { secrets: [...record.secrets] } : {}),
    }
  }

  async get(id: string): Promise<SandboxInfo> {
    const record = this.require(id)
    return this.info(record, await this.status(id))
  }

  async list(): Promise<SandboxInfo[]> {
    const records = [...this.records.values()].sort((a, b) =>
      a.createdAt.localeCompare(b.createdAt),
    )
    return Promise.all(records.map(async (r) => this.info(r, await this.status(r.id))))
  }

  /** The sandbox's container, for commands and files; 404 for an unknown sandbox. */
  container(id: string): Docker.Container {
    return this.docker.getContainer(sandboxName(this.require(id).id))
  }

  /** Every sandbox's proxy admin client, for the approval broker. */
  proxies(): { id: string; admin: ProxyAdmin }[] {
    return [...this.records.values()].map((r) => ({ id: r.id, admin: r.admin }))
  }

  /** A sandbox's proxy admin client; 404 for an unknown sandbox. */
  adminOf(id: string): ProxyAdmin {
    return this.require(id).admin
  }

  async networkEvents(id: string, query: NetworkEventsQuery): Promise<NetworkEvent[]> {
    const record = this.require(id)
    try {
      return await record.admin.events(query)
    } catch (err) {
      throw new SandboxError(
        502,
        'proxy-unreachable',
        `the egress proxy of sandbox ${id} does not answer (${(err as Error).message}); it may have stopped, in which case the sandbox has no network`,
      )
    }
  }

  async updateNetwork(id: string, policy: PolicyRequest): Promise<SandboxInfo> {
    const record = this.require(id)
    const spec = this.policySpec(policy)
    try {
      await record.admin.setPolicy(spec, policy)
    } catch (err) {
      throw new SandboxError(
        502,
        'proxy-unreachable',
        `cannot update the egress proxy of sandbox ${id}: ${(err as Error).message}`,
      )
    }
    record.policy = policy
    this.log.info({ sandbox: id, policy: spec.name }, 'sandbox policy replaced')
    return this.info(record, await this.status(id))
  }

  /**
   * Rebuilds the view from Docker labels: complete sandboxes are adopted (their
   * live policy read back from the proxy), leftovers removed, other runners'
   * sandboxes left alone. Run at start, after the engine comes back, and
   * periodically (a create or destroy that the engine failed half-way).
   */
  recover(): Promise<RecoveryResult> {
    return this.scanning.run(() => this.scan())
  }

  private async scan(): Promise<RecoveryResult> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: [LABEL.sandbox] },
    })
    const networks = await this.docker.listNetworks({ filters: { label: [LABEL.sandbox] } })
    const volumes =
      (await this.docker.listVolumes({ filters: { label: [LABEL.sandbox] } })).Volumes ?? []
    const ids = new Set<string>([
      ...containers.map((c) => c.Labels[LABEL.sandbox] as string),
      ...networks.map((n) => n.Labels?.[LABEL.sandbox] as string),
      ...volumes.map((v) => v.Labels?.[LABEL.sandbox] as string),
    ])
    let adopted = 0
    let removed = 0
    let foreign = 0
    // Trust writers live for a moment during a create: one left over is from a create that
    // stopped then (judged by its labels like any other piece).
    for (const c of containers)
      if (
        c.Labels[LABEL.role] === 'trust-writer' &&
        !this.busy.has(c.Labels[LABEL.sandbox] ?? '') &&
        this.leftoverVerdict(c.Labels, false) === 'remove'
      )
        await removeContainer(this.docker, c.Id)
    for (const id of ids) {
      if (this.records.has(id) || this.busy.has(id)) continue
      const proxy = containers.find(
        (c) => c.Labels[LABEL.sandbox] === id && c.Labels[LABEL.role] === 'proxy',
      )
      const sandbox = containers.find(
        (c) => c.Labels[LABEL.sandbox] === id && c.Labels[LABEL.role] === 'sandbox',
      )
      const network = networks.find((n) => n.Labels?.[LABEL.sandbox] === id)
      // Every piece carries the same runner, boot and creation labels: any one left will do
      // (a create can stop with only the network and the volume made).
      const labels: Record<string, string> =
        [
          ...containers.map((c) => c.Labels),
          ...networks.map((n) => n.Labels),
          ...volumes.map((v) => v.Labels),
        ].find((l) => l?.[LABEL.sandbox] === id) ?? {}
      // A container that was never started is what a create stopped in the middle of leaves.
      const started = (c: Docker.ContainerInfo | undefined): boolean =>
        c !== undefined && c.State !== 'created'
      const complete = Boolean(network && started(proxy) && started(sandbox))
      const verdict = this.leftoverVerdict(labels, complete)
      if (verdict === 'foreign') {
        foreign++
        continue
      }
      if (verdict === 'wait') continue
      if (verdict === 'remove') {
        try {
          await this.removeAll(id)
          this.log.info({ sandbox: id }, 'removed an incomplete or abandoned sandbox')
          removed++
        } catch (err) {
          this.log.warn({ sandbox: id, error: dockerMessage(err) }, 'could not remove orphan')
        }
        continue
      }
      await this.adopt(id, proxy as Docker.ContainerInfo, sandbox as Docker.ContainerInfo)
      adopted++
    }
    // A CA kept for a sandbox with nothing left on the engine: a create stopped before its
    // first object, or a removal stopped before its last step. The state directory is this
    // runner's alone, so no other runner's create is in progress here.
    for (const id of this.state.ids()) {
      if (ids.has(id) || this.records.has(id) || this.busy.has(id)) continue
      this.state.remove(id)
      this.log.info({ sandbox: id, only: 'kept CA' }, 'removed an incomplete or abandoned sandbox')
      removed++
    }
    return { adopted, removed, foreign }
  }

  /**
   * What to do with the pieces of a sandbox that is not in the view (and not being created
   * created or destroyed by this process), from its labels and whether all three pieces exist.
   */
  private leftoverVerdict(
    labels: Record<string, string>,
    complete: boolean,
  ): 'adopt' | 'remove' | 'wait' | 'foreign' {
    const owner = labels[LABEL.runner]
    if (owner !== undefined && owner !== this.config.runnerId) return 'foreign'
    const boot = labels[LABEL.boot]
    if (boot !== undefined) {
      // Ours. Made by this very process yet not in the view: a failed create or destroy
      // whose clean-up the engine refused. Made before this start: a half-made one is
      // an orphan (its creator is dead: one runner per id), a complete one is adopted.
      if (boot === this.boot) return 'remove'
      return complete ? 'adopt' : 'remove'
    }
    // Made by a runner from before runner labels: the same rules as it had.
    if (complete) return 'adopt'
    const created = labels[LABEL.created]
    if (created && Date.now() - Date.parse(created) < INCOMPLETE_GRACE_MS) return 'wait'
    return 'remove'
  }

  private async adopt(
    id: string,
    proxy: Docker.ContainerInfo,
    sandbox: Docker.ContainerInfo,
  ): Promise<void> {
    const labels = sandbox.Labels
    const record: SandboxRecord = {
      id,
      image: labels[LABEL.image] ?? sandbox.Image,
      createdAt: labels[LABEL.created] ?? new Date(sandbox.Created * 1000).toISOString(),
      expiresAt: labels[LABEL.expires] || null,
      proxyIp: labels[LABEL.proxyIp] ?? '',
      admin: new ProxyAdmin(`http://0.0.0.0:${PROXY_PORTS.admin}`, ''),
      secrets: (labels[LABEL.secrets] ?? '').split(',').filter((s) => s !== ''),
      policy: policyFromLabels(labels),
    }
    // The proxy holds the live policy (it may have been replaced since creation).
    await this.attachProxy(record, { readLivePolicy: true })
    this.records.set(id, record)
  }

  /**
   * Points the record at its proxy's current admin address, and sends the policy again
   * when the proxy restarted (it refuses everything until then). With `readLivePolicy`
   * (adoption), the proxy's live policy replaces the one from the labels first.
   */
  private async attachProxy(
    record: SandboxRecord,
    options: { readLivePolicy?: boolean; waitMs?: number } = {},
  ): Promise<void> {
    let info
    try {
      info = await this.docker.getContainer(proxyName(record.id)).inspect()
    } catch (err) {
      this.log.warn({ sandbox: record.id, error: dockerMessage(err) }, 'cannot inspect the proxy')
      return
    }
    const egressIp = info.NetworkSettings.Networks[this.config.egressNetwork]?.IPAddress
    record.admin = new ProxyAdmin(
      `http://${egressIp || '0.0.0.0'}:${PROXY_PORTS.admin}`,
      info.Config.Labels?.[LABEL.adminToken] ?? '',
    )
    if (!info.State.Running) return
    try {
      if (options.waitMs) await record.admin.waitUntilHealthy(options.waitMs)
      const live = await record.admin.getPolicy()
      if (options.readLivePolicy && live.source && typeof live.source === 'object')
        record.policy = live.source as PolicyRequest
      const restarted = live.spec.name === 'pending'
      if (restarted) {
        await record.admin.setPolicy(this.policySpec(record.policy), record.policy)
        this.log.info({ sandbox: record.id }, 'the proxy restarted; sent its policy again')
      }
      // A restarted proxy lost its CA and secrets; after a runner restart (adoption) the
      // secret values may have changed.
      if (restarted || options.readLivePolicy)
        await this.resendInterception(record.id, record.admin)
    } catch (err) {
      this.log.warn(
        { sandbox: record.id, error: (err as Error).message },
        'cannot read or send the policy of a proxy; it refuses everything until it has one',
      )
    }
  }

  /**
   * Follows the engine: a proxy that starts again (the engine restarted, or the proxy
   * crashed and Docker restarted it) gets its policy back; after every reconnect the
   * runner catches up (scan, then every proxy); and every minute it looks for leftovers.
   */
  watchDocker(): void {
    this.watch = new DockerWatch(this.docker, LABEL.sandbox, {
      onConnected: async (reconnected) => {
        // Also the first time: a proxy that started between start-up recovery and the
        // stream opening sent no event we could see.
        if (reconnected) this.log.info({}, 'the Docker engine is back; catching up')
        await this.recover().catch((err: unknown) =>
          this.log.warn({ error: dockerMessage(err) }, 'scan after reconnecting failed'),
        )
        await Promise.all(
          [...this.records.values()].map((r) =>
            this.attachProxy(r, { waitMs: PROXY_START_TIMEOUT_MS }),
          ),
        )
      },
      onContainerStart: (labels) => {
        const record = this.records.get(labels[LABEL.sandbox] ?? '')
        if (!record || labels[LABEL.role] !== 'proxy') return
        void this.attachProxy(record, { waitMs: PROXY_START_TIMEOUT_MS })
      },
      onDisconnected: (reason) =>
        this.log.warn({ reason }, 'lost the Docker engine; reconnecting when it answers'),
    })
    this.watch.start()
    this.reconciler = setInterval(() => {
      void this.recover().catch((err: unknown) =>
        this.log.warn({ error: dockerMessage(err) }, 'periodic scan failed'),
      )
    }, RECONCILE_INTERVAL_MS)
    this.reconciler.unref()
  }

  /**
   * Sends a proxy its CA and secrets again from the state directory: after a runner
   * restart (secret values may have changed) or a proxy restart (it lost them).
   * Without kept state the proxy has no CA, and interception fails closed.
   */
  private async resendInterception(id: string, admin: ProxyAdmin): Promise<void> {
    const state = this.state.load(id)
    if (!state) {
      this.log.warn(
        { sandbox: id, stateDir: this.config.stateDir },
        'no CA kept for this sandbox (state directory lost?); its proxy cannot intercept TLS and refuses hosts that need it',
      )
      return
    }
    await admin.setInterception(this.interceptionSettings(id, state))
  }

  /** Pushes changed profiles to the proxies that use them, so the catalogue and enforcement agree. */
  async applyCatalogueChange(changed: readonly string[]): Promise<void> {
    for (const record of this.records.values()) {
      const policy = record.policy
      const uses =
        'networkProfile' in policy ? [policy.networkProfile] : (policy.network.include ?? [])
      if (!uses.some((name) => changed.includes(name))) continue
      try {
        await record.admin.setPolicy(this.policySpec(policy), policy)
        this.log.info(
          { sandbox: record.id, profiles: uses },
          'profile changed; pushed to the sandbox proxy',
        )
      } catch (err) {
        this.log.warn(
          { sandbox: record.id, error: (err as Error).message },
          'could not push a changed profile; the proxy keeps its previous rules',
        )
      }
    }
  }

  /** Destroys sandboxes past their timeout, every few seconds. */
  startSweeper(intervalMs = 2000): void {
    this.sweeper = setInterval(() => {
      const now = new Date().toISOString()
      for (const record of this.records.values()) {
        if (record.expiresAt && record.expiresAt <= now) {
          this.log.info({ sandbox: record.id, expiresAt: record.expiresAt }, 'sandbox timed out')
          void this.destroy(record.id).catch((err: unknown) =>
            this.log.warn(
              { sandbox: record.id, error: dockerMessage(err) },
              'could not destroy a timed-out sandbox',
            ),
          )
        }
      }
    }, intervalMs)
    this.sweeper.unref()
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper)
    if (this.reconciler) clearInterval(this.reconciler)
    this.watch?.stop()
  }
}
