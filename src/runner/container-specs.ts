// What the runner asks Docker to create for a sandbox, as pure functions of
// what it has decided (id, addresses, labels, limits): the internal network,
// the proxy sidecar, the sandbox container and the trust writer. Every
// hardening flag of the topology in DESIGN.md is set here, in one place, and
// test/unit/runner/container-specs.test.ts checks each one without Docker.

import type Docker from 'dockerode'
import type { CreateSandboxRequest } from 'isorun'
import { SANDBOX_TRUST_DIR, trustEnvironment } from '../tls/sandbox-trust.js'
import type { SandboxDefaults } from './config.js'
import type { SandboxSubnet } from './subnets.js'

export const LABEL = {
  sandbox: 'isorun.sandbox',
  role: 'isorun.role',
  profile: 'isorun.profile',
  network: 'isorun.network-policy',
  created: 'isorun.created',
  expires: 'isorun.expires',
  image: 'isorun.image',
  proxyIp: 'isorun.proxy-ip',
  adminToken: 'isorun.admin-token',
  runner: 'isorun.runner',
  boot: 'isorun.runner-boot',
  /** Names of the secrets a sandbox was created with (never values). */
  secrets: 'isorun.secrets',
} as const

export const PROXY_PORTS = {
  http: 3128,
  socks: 1080,
  dns: 53,
  tls: 443,
  plain: 80,
  admin: 9090,
} as const

export function networkName(id: string): string {
  return `isorun-sbx-${id}`
}
export function proxyName(id: string): string {
  return `isorun-sbx-${id}-proxy`
}
export function sandboxName(id: string): string {
  return `isorun-sbx-${id}`
}
export function trustVolumeName(id: string): string {
  return `isorun-sbx-${id}-ca`
}
/** The container that fills the trust volume; removed once it has. */
export function trustWriterName(id: string): string {
  return `isorun-sbx-${id}-trust`
}

/** Where the trust writer mounts the volume it fills. */
export const TRUST_WRITER_MOUNT = '/trust'

/**
 * The trust volume mounted at `target`. NoCopy: an image that has files at that
 * path must not fill the volume with them.
 */
export function trustMount(id: string, target: string, readOnly: boolean): Docker.MountSettings {
  return {
    Type: 'volume',
    Source: trustVolumeName(id),
    Target: target,
    ReadOnly: readOnly,
    // The typings want every volume option; the Engine API takes any of them alone.
    VolumeOptions: { NoCopy: true } as Docker.MountSettings['VolumeOptions'],
  }
}

/**
 * The sidecar's program in the product image: `isorun proxy` bundled into one file by
 * esbuild (scripts/bundle-proxy.mjs; the Dockerfile puts dist/ at /app/dist). It takes the
 * CLI's arguments, so the image's own entrypoint could run a sidecar too, only bigger.
 */
export const SIDECAR_PROGRAM = '/app/dist/isorun-proxy.mjs'

/**
 * Node and V8 flags for the sidecar, each kept because `npm run bench:size` showed it pays
 * (docs/benchmarks.md, "Sidecar size"):
 *   --max-semi-space-size=1  the young generation's semi-spaces capped at 1 MiB (default: grows
 *                            to 16): the proxy's garbage is short-lived and small. Peak RSS after
 *                            bench:size's loads 100-110 MiB against 111-126 without (two runs),
 *                            idle memory within 0.6 MiB, CPU per request and tunnel within the
 *                            run-to-run noise.
 * No other flag or variable paid: --max-old-space-size=64, --single-threaded, --v8-pool-size=1,
 * UV_THREADPOOL_SIZE=1 and MALLOC_ARENA_MAX=2 left idle memory unchanged; --jitless (and
 * --lite-mode, --no-expose-wasm) saves 1.5 MiB of shared file pages and kills the proxy on its
 * first HTTP request: undici needs WebAssembly.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1']

/** Bounded container logs: a chatty sandbox or proxy cannot fill the engine's disk. */
const LOG_CONFIG = { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } }

/**
 * The sandbox's network: internal (no gateway, no NAT) and without an address
 * for the bridge on the host, since an internal network still lets containers
 * reach host services on the gateway address otherwise.
 */
export function sandboxNetworkSpec(
  id: string,
  subnet: SandboxSubnet,
  labels: Record<string, string>,
): Docker.NetworkCreateOptions {
  return {
    Name: networkName(id),
    Driver: 'bridge',
    Internal: true,
    CheckDuplicate: true,
    IPAM: { Driver: 'default', Config: [{ Subnet: subnet.subnet, Gateway: subnet.gateway }] },
    Options: { 'com.docker.network.bridge.inhibit_ipv4': 'true' },
    Labels: { ...labels, [LABEL.role]: 'network' },
  }
}

/** What the runner decides about a sidecar's proxy, besides where it listens. */
export interface ProxySettings {
  readonly id: string
  readonly logAllowed: boolean
  /** Special-purpose ranges the proxy may reach (ISORUN_ALLOW_PRIVATE). */
  readonly allowPrivate: readonly string[]
  /** CIDR blocks the proxy never reaches: isorun's own networks. */
  readonly blocked: readonly string[]
  /** The floor and ceiling of the proxy's DNS cache (ISORUN_PROXY_DNS_TTL_MIN/_MAX). */
  readonly dnsTtl: { readonly minSeconds: number; readonly maxSeconds: number }
}

/** Where a sidecar's listeners are, as `host:port` flag values. */
export type ProxyListenFlags = Record<keyof typeof PROXY_PORTS, string>

/**
 * The sidecar's `isorun proxy` arguments: refusing everything until the runner sends a policy
 * (bench:size starts the same arguments on loopback).
 */
export function proxyArguments(settings: ProxySettings, listen: ProxyListenFlags): string[] {
  return [
    'proxy',
    '--wait-for-policy',
    '--sandbox-id',
    settings.id,
    '--http',
    listen.http,
    '--socks',
    listen.socks,
    '--dns',
    listen.dns,
    '--tls',
    listen.tls,
    '--plain',
    listen.plain,
    '--admin',
    listen.admin,
    settings.logAllowed ? '--log-allowed' : '--no-log-allowed',
    '--dns-ttl-min',
    String(settings.dnsTtl.minSeconds),
    '--dns-ttl-max',
    String(settings.dnsTtl.maxSeconds),
    ...(settings.allowPrivate.length > 0
      ? ['--allow-private', settings.allowPrivate.join(',')]
      : []),
    ...(settings.blocked.length > 0 ? ['--block', settings.blocked.join(',')] : []),
  ]
}

export interface ProxySpecInput extends ProxySettings {
  readonly image: string
  readonly subnet: SandboxSubnet
  /** The admin API token, also kept in a label so a restarted runner can reach the proxy. */
  readonly token: string
  readonly labels: Record<string, string>
  /** `name:ip` entries for the proxy's /etc/hosts. */
  readonly extraHosts: readonly string[]
}

/**
 * The proxy sidecar: its listeners on the sandbox network's fixed address, its
 * admin API on the egress side (the runner connects it to the egress network
 * after creating it).
 */
export function proxyContainerSpec(input: ProxySpecInput): Docker.ContainerCreateOptions {
  const { id, subnet } = input
  const ip = subnet.proxy
  const listen = Object.fromEntries(
    Object.entries(PROXY_PORTS).map(([kind, port]) => [kind, `${ip}:${port}`]),
  ) as ProxyListenFlags
  return {
    name: proxyName(id),
    Image: input.image,
    Cmd: proxyArguments(input, { ...listen, admin: `egress:${PROXY_PORTS.admin}` }),
    // The bundle, not the full CLI: see SIDECAR_PROGRAM.
    Entrypoint: ['node', ...SIDECAR_NODE_FLAGS, SIDECAR_PROGRAM],
    Env: [`ISORUN_ADMIN_TOKEN=${input.token}`, 'NODE_ENV=production'],
    Labels: {
      ...input.labels,
      [LABEL.role]: 'proxy',
      [LABEL.proxyIp]: ip,
      [LABEL.adminToken]: input.token,
    },
    HostConfig: {
      NetworkMode: networkName(id),
      // Listen on 53, 80 and 443 without root or capabilities.
      Sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      ReadonlyRootfs: true,
      Memory: 256 * 1024 * 1024,
      PidsLimit: 128,
      Init: true,
      // Back with the engine after a restart, waiting for its policy (see watchDocker).
      RestartPolicy: { Name: 'unless-stopped' },
      ExtraHosts: [...input.extraHosts],
      LogConfig: LOG_CONFIG,
    },
    NetworkingConfig: {
      EndpointsConfig: { [networkName(id)]: { IPAMConfig: { IPv4Address: ip } } },
    },
  }
}

export interface SandboxSpecInput {
  readonly id: string
  readonly subnet: SandboxSubnet
  readonly request: CreateSandboxRequest
  readonly defaults: SandboxDefaults
  readonly labels: Record<string, string>
  /** Each secret's placeholder, under the variable name the sandbox sees it as. */
  readonly placeholders: Record<string, string>
}

/** The proxy URLs and exclusions every sandbox gets, in both spellings. */
export function proxyEnvironment(proxyIp: string): Record<string, string> {
  const proxyUrl = `http://${proxyIp}:${PROXY_PORTS.http}`
  const socksUrl = `socks5h://${proxyIp}:${PROXY_PORTS.socks}`
  const noProxy = 'localhost,127.0.0.1,::1'
  return {
    HTTP_PROXY: proxyUrl,
    HTTPS_PROXY: proxyUrl,
    ALL_PROXY: socksUrl,
    NO_PROXY: noProxy,
    http_proxy: proxyUrl,
    https_proxy: proxyUrl,
    all_proxy: socksUrl,
    no_proxy: noProxy,
  }
}

/**
 * The sandbox container: on the internal network only, the proxy as its DNS,
 * no IPv6, fewer capabilities than Docker's default, no privilege gain,
 * memory/CPU/pids limits, and what it trusts mounted read-only.
 */
export function sandboxContainerSpec(input: SandboxSpecInput): Docker.ContainerCreateOptions {
  const { id, subnet, request, defaults } = input
  const resources = request.resources ?? {}
  // One entry per name: isorun's win over the creator's, except JAVA_TOOL_OPTIONS (merged).
  const env = Object.entries({
    ...request.env,
    ...proxyEnvironment(subnet.proxy),
    ...trustEnvironment(request.env?.JAVA_TOOL_OPTIONS),
    ...input.placeholders,
  }).map(([k, v]) => `${k}=${v}`)
  return {
    name: sandboxName(id),
    Hostname: `sbx-${id}`,
    Image: request.image,
    // Keep the container alive for exec, whatever the image's own command is.
    Entrypoint: ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'],
    Cmd: [],
    Env: env,
    Labels: {
      ...input.labels,
      [LABEL.role]: 'sandbox',
      [LABEL.image]: request.image,
      [LABEL.proxyIp]: subnet.proxy,
    },
    HostConfig: {
      NetworkMode: networkName(id),
      Dns: [subnet.proxy],
      DnsSearch: [],
      // No IPv6 at all: the sandbox network is IPv4 only, and a link-local IPv6 address
      // could otherwise reach the host's bridge. Without NET_ADMIN it cannot be undone.
      Sysctls: {
        'net.ipv6.conf.all.disable_ipv6': '1',
        'net.ipv6.conf.default.disable_ipv6': '1',
      },
      // Default capabilities minus the ones a hostile workload could use against its
      // neighbours: raw packets (forging frames to the proxy's other addresses) and devices.
      CapDrop: ['NET_RAW', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP', 'SYS_CHROOT'],
      SecurityOpt: ['no-new-privileges:true'],
      Memory: Math.round((resources.memoryMb ?? defaults.memoryMb) * 1024 * 1024),
      NanoCpus: Math.round((resources.cpus ?? defaults.cpus) * 1e9),
      PidsLimit: resources.pids ?? defaults.pids,
      Init: true,
      RestartPolicy: { Name: 'unless-stopped' },
      LogConfig: LOG_CONFIG,
      // Read-only: nothing in the sandbox can change what its other processes trust.
      Mounts: [trustMount(id, SANDBOX_TRUST_DIR, true)],
    },
    NetworkingConfig: {
      EndpointsConfig: { [networkName(id)]: { IPAMConfig: { IPv4Address: subnet.sandbox } } },
    },
  }
}

/** The volume that holds what the sandbox trusts (its image's roots and its own CA). */
export function trustVolumeSpec(
  id: string,
  labels: Record<string, string>,
): Docker.VolumeCreateOptions {
  return { Name: trustVolumeName(id), Labels: { ...labels, [LABEL.role]: 'trust' } }
}

/**
 * The trust writer: a container made from the proxy image only to receive an
 * archive upload into the trust volume. It is never started and has no network.
 */
export function trustWriterSpec(
  id: string,
  image: string,
  labels: Record<string, string>,
): Docker.ContainerCreateOptions {
  return {
    name: trustWriterName(id),
    Image: image,
    Cmd: ['true'],
    Labels: { ...labels, [LABEL.role]: 'trust-writer' },
    NetworkDisabled: true,
    HostConfig: { NetworkMode: 'none', Mounts: [trustMount(id, TRUST_WRITER_MOUNT, false)] },
  }
}
