// The Docker objects of a sandbox, checked flag by flag without Docker: each
// hardening setting of DESIGN.md's topology is asserted on the spec the runner
// sends to the engine (the e2e tests check that the engine honours them).

import type Docker from 'dockerode'
import { describe, expect, it } from 'vitest'
import {
  LABEL,
  PROXY_PORTS,
  proxyContainerSpec,
  sandboxContainerSpec,
  SIDECAR_NODE_FLAGS,
  SIDECAR_PROGRAM,
  sandboxNetworkSpec,
  TRUST_WRITER_MOUNT,
  trustVolumeSpec,
  trustWriterSpec,
  type ProxySpecInput,
  type SandboxSpecInput,
} from '../../../src/runner/container-specs.js'
import { SANDBOX_TRUST_DIR } from '../../../src/tls/sandbox-trust.js'

const ID = 'a1b2c3d4e5f6'
const NETWORK = `isorun-sbx-${ID}`
const SUBNET = {
  subnet: '10.231.4.0/29',
  gateway: '10.231.4.1',
  proxy: '10.231.4.2',
  sandbox: '10.231.4.3',
}
const LABELS = { [LABEL.sandbox]: ID, [LABEL.runner]: 'runner-1' }

function proxyInput(overrides: Partial<ProxySpecInput> = {}): ProxySpecInput {
  return {
    id: ID,
    image: 'isorun:local',
    subnet: SUBNET,
    token: 'secret-token',
    labels: LABELS,
    logAllowed: true,
    allowPrivate: [],
    blocked: [],
    extraHosts: [],
    dnsTtl: { minSeconds: 5, maxSeconds: 300 },
    ...overrides,
  }
}

function sandboxInput(overrides: Partial<SandboxSpecInput> = {}): SandboxSpecInput {
  return {
    id: ID,
    subnet: SUBNET,
    request: { image: 'python:3.12-slim' },
    defaults: { memoryMb: 512, cpus: 1, pids: 256, timeoutMs: 0 },
    labels: LABELS,
    placeholders: {},
    ...overrides,
  }
}

/** The value of `--flag` in a command line, or undefined when the flag is absent. */
function flag(cmd: readonly string[] | undefined, name: string): string | undefined {
  const at = (cmd ?? []).indexOf(name)
  return at < 0 ? undefined : cmd![at + 1]
}

function envOf(spec: Docker.ContainerCreateOptions): Map<string, string> {
  const env = new Map<string, string>()
  for (const entry of spec.Env ?? []) {
    const eq = entry.indexOf('=')
    expect(env.has(entry.slice(0, eq)), `one entry per variable (${entry})`).toBe(false)
    env.set(entry.slice(0, eq), entry.slice(eq + 1))
  }
  return env
}

const containers: [string, Docker.ContainerCreateOptions][] = [
  ['proxy', proxyContainerSpec(proxyInput())],
  ['sandbox', sandboxContainerSpec(sandboxInput())],
  ['trust writer', trustWriterSpec(ID, 'isorun:local', LABELS)],
]

describe.each(containers)('every container: %s', (_, spec) => {
  const host = spec.HostConfig ?? {}
  it('is not privileged and adds no capability or device', () => {
    expect(host.Privileged).toBeUndefined()
    expect(host.CapAdd).toBeUndefined()
    expect(host.Devices).toBeUndefined()
    expect(host.DeviceRequests).toBeUndefined()
  })
  it('shares no namespace with the host and mounts nothing of it', () => {
    expect(host.PidMode).toBeUndefined()
    expect(host.IpcMode).toBeUndefined()
    expect(host.UTSMode).toBeUndefined()
    expect(host.UsernsMode).toBeUndefined()
    expect(host.Binds).toBeUndefined()
    for (const mount of host.Mounts ?? []) expect(mount.Type).toBe('volume')
    expect(host.NetworkMode).not.toBe('host')
  })
  it('publishes no port on the host', () => {
    expect(host.PortBindings).toBeUndefined()
    expect(host.PublishAllPorts).toBeUndefined()
    expect(spec.ExposedPorts).toBeUndefined()
  })
  it('carries the sandbox labels, so recovery finds it', () => {
    expect(spec.Labels?.[LABEL.sandbox]).toBe(ID)
    expect(spec.Labels?.[LABEL.runner]).toBe('runner-1')
    expect(spec.Labels?.[LABEL.role]).toBeTruthy()
  })
})

describe('the sandbox network', () => {
  const spec = sandboxNetworkSpec(ID, SUBNET, LABELS)
  it('is internal: no gateway to the outside, no NAT', () => {
    expect(spec.Internal).toBe(true)
    expect(spec.Driver).toBe('bridge')
  })
  it('gives the bridge no address on the host (host services stay out of reach)', () => {
    expect(spec.Options?.['com.docker.network.bridge.inhibit_ipv4']).toBe('true')
  })
  it('has the subnet the runner chose (it knows the proxy address in advance)', () => {
    expect(spec.Name).toBe(NETWORK)
    expect(spec.IPAM?.Config).toEqual([{ Subnet: SUBNET.subnet, Gateway: SUBNET.gateway }])
    expect(spec.EnableIPv6).toBeUndefined()
  })
  it('is labelled as the sandbox network', () => {
    expect(spec.Labels).toEqual({ ...LABELS, [LABEL.role]: 'network' })
  })
})

describe('the proxy sidecar', () => {
  const spec = proxyContainerSpec(proxyInput())
  const host = spec.HostConfig!
  it('drops every capability and cannot gain privileges', () => {
    expect(host.CapDrop).toEqual(['ALL'])
    expect(host.SecurityOpt).toEqual(['no-new-privileges:true'])
  })
  it('binds low ports through a per-container sysctl, nothing else', () => {
    expect(host.Sysctls).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0' })
  })
  it('has a read-only root file system', () => {
    expect(host.ReadonlyRootfs).toBe(true)
  })
  it('has memory and process limits and an init process', () => {
    expect(host.Memory).toBe(256 * 1024 * 1024)
    expect(host.PidsLimit).toBe(128)
    expect(host.Init).toBe(true)
  })
  it('restarts with the engine and keeps bounded logs', () => {
    expect(host.RestartPolicy).toEqual({ Name: 'unless-stopped' })
    expect(host.LogConfig).toEqual({
      Type: 'json-file',
      Config: { 'max-size': '10m', 'max-file': '3' },
    })
  })
  it('sits on the sandbox network at the fixed proxy address', () => {
    expect(spec.name).toBe(`${NETWORK}-proxy`)
    expect(host.NetworkMode).toBe(NETWORK)
    expect(spec.NetworkingConfig?.EndpointsConfig).toEqual({
      [NETWORK]: { IPAMConfig: { IPv4Address: SUBNET.proxy } },
    })
  })
  it('runs the bundled sidecar program with its node flags, not the full CLI', () => {
    expect(spec.Entrypoint).toEqual(['node', ...SIDECAR_NODE_FLAGS, SIDECAR_PROGRAM])
    expect(spec.Cmd?.[0]).toBe('proxy')
    // The flags are on node's command line, where `ps` shows them, not in NODE_OPTIONS.
    expect(envOf(spec).has('NODE_OPTIONS')).toBe(false)
  })
  it('refuses everything until the runner sends a policy', () => {
    expect(spec.Cmd).toContain('--wait-for-policy')
    expect(spec.Cmd).not.toContain('--profile')
    expect(flag(spec.Cmd, '--allow')).toBeUndefined()
  })
  it('listens on the sandbox-facing address, and its admin API only on the egress side', () => {
    for (const [name, port] of Object.entries(PROXY_PORTS)) {
      if (name === 'admin') continue
      expect(flag(spec.Cmd, `--${name}`)).toBe(`${SUBNET.proxy}:${port}`)
    }
    expect(flag(spec.Cmd, '--admin')).toBe(`egress:${PROXY_PORTS.admin}`)
  })
  it('gets its admin token in the environment (not on the command line) and in a label', () => {
    expect(spec.Cmd?.join(' ')).not.toContain('secret-token')
    expect(flag(spec.Cmd, '--admin-token')).toBeUndefined()
    expect(envOf(spec).get('ISORUN_ADMIN_TOKEN')).toBe('secret-token')
    expect(spec.Labels?.[LABEL.adminToken]).toBe('secret-token')
    expect(spec.Labels?.[LABEL.proxyIp]).toBe(SUBNET.proxy)
    expect(spec.Labels?.[LABEL.role]).toBe('proxy')
  })
  it("blocks isorun's own networks and opens special ranges only when the operator does", () => {
    expect(flag(spec.Cmd, '--block')).toBeUndefined()
    expect(flag(spec.Cmd, '--allow-private')).toBeUndefined()
    const opened = proxyContainerSpec(
      proxyInput({ blocked: ['172.30.0.0/16', '10.231.0.0/16'], allowPrivate: ['10.9.0.0/16'] }),
    )
    expect(flag(opened.Cmd, '--block')).toBe('172.30.0.0/16,10.231.0.0/16')
    expect(flag(opened.Cmd, '--allow-private')).toBe('10.9.0.0/16')
  })
  it('logs allowed decisions as the operator says', () => {
    expect(spec.Cmd).toContain('--log-allowed')
    expect(proxyContainerSpec(proxyInput({ logAllowed: false })).Cmd).toContain('--no-log-allowed')
  })
  it("keeps DNS answers within the operator's TTL floor and ceiling", () => {
    expect(flag(spec.Cmd, '--dns-ttl-min')).toBe('5')
    expect(flag(spec.Cmd, '--dns-ttl-max')).toBe('300')
    const tuned = proxyContainerSpec(proxyInput({ dnsTtl: { minSeconds: 0, maxSeconds: 60 } }))
    expect(flag(tuned.Cmd, '--dns-ttl-min')).toBe('0')
    expect(flag(tuned.Cmd, '--dns-ttl-max')).toBe('60')
  })
  it("passes the operator's host entries and nothing else", () => {
    expect(host.ExtraHosts).toEqual([])
    const mapped = proxyContainerSpec(proxyInput({ extraHosts: ['pypi.org:10.0.0.5'] }))
    expect(mapped.HostConfig?.ExtraHosts).toEqual(['pypi.org:10.0.0.5'])
  })
})

describe('the sandbox container', () => {
  const spec = sandboxContainerSpec(sandboxInput())
  const host = spec.HostConfig!
  it('is on the sandbox network only, at its fixed address', () => {
    expect(spec.name).toBe(NETWORK)
    expect(host.NetworkMode).toBe(NETWORK)
    expect(spec.NetworkingConfig?.EndpointsConfig).toEqual({
      [NETWORK]: { IPAMConfig: { IPv4Address: SUBNET.sandbox } },
    })
  })
  it('resolves names through its proxy only', () => {
    expect(host.Dns).toEqual([SUBNET.proxy])
    expect(host.DnsSearch).toEqual([])
    expect(host.ExtraHosts).toBeUndefined()
  })
  it('has IPv6 switched off', () => {
    expect(host.Sysctls).toEqual({
      'net.ipv6.conf.all.disable_ipv6': '1',
      'net.ipv6.conf.default.disable_ipv6': '1',
    })
  })
  it('loses raw sockets, device nodes and the other risky default capabilities', () => {
    expect(host.CapDrop).toEqual(['NET_RAW', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP', 'SYS_CHROOT'])
    expect(host.SecurityOpt).toEqual(['no-new-privileges:true'])
  })
  it('has the default memory, CPU and process limits and an init process', () => {
    expect(host.Memory).toBe(512 * 1024 * 1024)
    expect(host.NanoCpus).toBe(1e9)
    expect(host.PidsLimit).toBe(256)
    expect(host.Init).toBe(true)
  })
  it("takes the creator's limits instead of the defaults", () => {
    const limited = sandboxContainerSpec(
      sandboxInput({
        request: { image: 'alpine', resources: { memoryMb: 64.5, cpus: 0.25, pids: 32 } },
      }),
    ).HostConfig!
    expect(limited.Memory).toBe(Math.round(64.5 * 1024 * 1024))
    expect(limited.NanoCpus).toBe(0.25e9)
    expect(limited.PidsLimit).toBe(32)
  })
  it('restarts with the engine and keeps bounded logs', () => {
    expect(host.RestartPolicy).toEqual({ Name: 'unless-stopped' })
    expect(host.LogConfig).toEqual({
      Type: 'json-file',
      Config: { 'max-size': '10m', 'max-file': '3' },
    })
  })
  it('mounts its trust files read-only, without copying the image over them', () => {
    expect(host.Mounts).toEqual([
      {
        Type: 'volume',
        Source: `${NETWORK}-ca`,
        Target: SANDBOX_TRUST_DIR,
        ReadOnly: true,
        VolumeOptions: { NoCopy: true },
      },
    ])
  })
  it("runs a shell that stays alive for exec, whatever the image's command", () => {
    expect(spec.Entrypoint).toEqual([
      '/bin/sh',
      '-c',
      'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done',
    ])
    expect(spec.Cmd).toEqual([])
    expect(spec.Image).toBe('python:3.12-slim')
    expect(spec.Labels?.[LABEL.image]).toBe('python:3.12-slim')
    expect(spec.Labels?.[LABEL.role]).toBe('sandbox')
  })
  it('points every proxy variable at its proxy, and the creator cannot change them', () => {
    const env = envOf(
      sandboxContainerSpec(
        sandboxInput({
          request: {
            image: 'alpine',
            env: { HTTP_PROXY: 'http://evil:1', no_proxy: '*', APP_MODE: 'test' },
          },
        }),
      ),
    )
    const http = `http://${SUBNET.proxy}:${PROXY_PORTS.http}`
    const socks = `socks5h://${SUBNET.proxy}:${PROXY_PORTS.socks}`
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'])
      expect(env.get(name)).toBe(http)
    expect(env.get('ALL_PROXY')).toBe(socks)
    expect(env.get('all_proxy')).toBe(socks)
    expect(env.get('NO_PROXY')).toBe('localhost,127.0.0.1,::1')
    expect(env.get('no_proxy')).toBe('localhost,127.0.0.1,::1')
    expect(env.get('APP_MODE')).toBe('test')
  })
  it("points clients at its trust files and merges the creator's JAVA_TOOL_OPTIONS", () => {
    const env = envOf(
      sandboxContainerSpec(
        sandboxInput({
          request: { image: 'eclipse-temurin', env: { JAVA_TOOL_OPTIONS: '-Xmx256m' } },
        }),
      ),
    )
    expect(env.get('SSL_CERT_FILE')).toMatch(new RegExp(`^${SANDBOX_TRUST_DIR}/`))
    expect(env.get('JAVA_TOOL_OPTIONS')).toContain('-Xmx256m')
    expect(env.get('JAVA_TOOL_OPTIONS')).toContain(SANDBOX_TRUST_DIR)
  })
  it('holds a placeholder per secret, never a value', () => {
    const env = envOf(
      sandboxContainerSpec(sandboxInput({ placeholders: { GITHUB_TOKEN: 'isorun-ph-1234' } })),
    )
    expect(env.get('GITHUB_TOKEN')).toBe('isorun-ph-1234')
  })
})

describe('the trust volume and its writer', () => {
  it('the volume is labelled as the trust volume', () => {
    expect(trustVolumeSpec(ID, LABELS)).toEqual({
      Name: `${NETWORK}-ca`,
      Labels: { ...LABELS, [LABEL.role]: 'trust' },
    })
  })
  it('the writer has no network and mounts the volume read-write only for the upload', () => {
    const spec = trustWriterSpec(ID, 'isorun:local', LABELS)
    expect(spec.name).toBe(`${NETWORK}-trust`)
    expect(spec.NetworkDisabled).toBe(true)
    expect(spec.HostConfig?.NetworkMode).toBe('none')
    expect(spec.HostConfig?.Mounts).toEqual([
      {
        Type: 'volume',
        Source: `${NETWORK}-ca`,
        Target: TRUST_WRITER_MOUNT,
        ReadOnly: false,
        VolumeOptions: { NoCopy: true },
      },
    ])
    expect(spec.Labels?.[LABEL.role]).toBe('trust-writer')
  })
})
