// `isorun proxy`: the egress proxy, standalone or as a sandbox's sidecar. The
// flags are read by proxy-flags.ts; this starts the proxy they describe and
// runs it until SIGTERM or SIGINT.

import { randomBytes } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import { compilePolicy, joinAuthority, PolicyError, type PolicySpec } from '../../policy/index.js'
import type { ProfileCatalogue } from '../../profiles/index.js'
import { followProfile } from '../../proxy/policy-source.js'
import { startProxy, type ProxyListeners } from '../../proxy/proxy.js'
import { interceptionFromFlags } from '../interception-flags.js'
import { UsageError } from '../errors.js'
import { parseProxyFlags, PROXY_USAGE, type ProxyFlags } from '../proxy-flags.js'

/**
 * `egress` as a host: the first non-loopback IPv4 address of this machine that
 * no other listener uses. A sidecar attached to a sandbox network and an
 * egress network uses it to put its admin API on the egress side only.
 */
function egressAddress(exclude: readonly string[]): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family === 'IPv4' && !a.internal && !exclude.includes(a.address)) return a.address
    }
  }
  throw new UsageError(
    '--admin egress:PORT: this machine has no IPv4 address besides the ones the other listeners use',
  )
}

/** The listeners with `egress` as the admin host replaced by that address. */
function resolveEgress(listen: ProxyListeners): ProxyListeners {
  if (listen.admin?.host !== 'egress') return listen
  const others = [listen.http, listen.socks, listen.tls, listen.plain, listen.dns].flatMap((a) =>
    a ? [a.host] : [],
  )
  return { ...listen, admin: { host: egressAddress(others), port: listen.admin.port } }
}

/** The first policy's spec; for --profile, also the catalogue it came from. */
async function initialSpec(
  flags: ProxyFlags,
): Promise<{ spec: PolicySpec; catalogue?: ProfileCatalogue }> {
  const { policy } = flags
  switch (policy.kind) {
    case 'wait':
      return { spec: { name: 'pending', mode: 'deny-all', allow: [], deny: [] } }
    case 'rules':
      return {
        spec: {
          name: 'custom',
          mode: policy.allow.length > 0 ? 'allow-list' : 'allow-all',
          allow: policy.allow.map((rule) => ({ rule, from: 'custom' })),
          deny: policy.deny.map((rule) => ({ rule, from: 'custom' })),
        },
      }
    case 'profile': {
      // The profiles (and their YAML parser) are loaded for --profile, or when the admin API
      // is first asked for a profile by name; a sidecar sent resolved specs never loads them.
      const [{ policySpecOf }, { openCatalogue, unknownProfile }] = await Promise.all([
        import('../../profiles/index.js'),
        import('../catalogue.js'),
      ])
      const catalogue = openCatalogue(flags.profileDirs)
      const profile = catalogue.get(policy.name)
      if (!profile) throw unknownProfile(policy.name, catalogue)
      return { spec: policySpecOf(profile), catalogue }
    }
  }
}

export async function proxyCommand(argv: string[]): Promise<number> {
  const flags = parseProxyFlags(argv, process.env)
  if (flags === 'help') {
    process.stdout.write(`${PROXY_USAGE}\n`)
    return 0
  }
  const { spec, catalogue } = await initialSpec(flags)
  let policy
  try {
    policy = compilePolicy(spec, flags.operator)
  } catch (err) {
    if (err instanceof PolicyError) throw new UsageError(err.message)
    throw err
  }
  const listen = resolveEgress(flags.listen)
  let adminToken = flags.adminToken
  if (listen.admin && !adminToken) {
    adminToken = randomBytes(24).toString('base64url')
    process.stderr.write(
      `isorun proxy: admin token (set ISORUN_ADMIN_TOKEN to choose one): ${adminToken}\n`,
    )
  }

  const interception = await interceptionFromFlags(flags.interception, (line) =>
    process.stderr.write(`isorun proxy: ${line}\n`),
  )
  let proxy
  try {
    proxy = await startProxy({
      ...(interception ? { interception } : {}),
      policy,
      listen,
      operator: flags.operator,
      catalogue:
        catalogue ??
        (async () => {
          const [{ ProfileCatalogue }, { profileDirsFrom }] = await Promise.all([
            import('../../profiles/index.js'),
            import('../catalogue.js'),
          ])
          return new ProfileCatalogue({
            dirs: profileDirsFrom(flags.profileDirs),
          })
        }),
      resolveOverrides: flags.resolveOverrides,
      dns: flags.dns,
      ...(flags.parentProxy ? { parentProxy: flags.parentProxy } : {}),
      ...(flags.sandboxId ? { sandboxId: flags.sandboxId } : {}),
      logAllowed: flags.logAllowed,
      ...(adminToken ? { adminToken } : {}),
      ...(flags.dnsAnswerAddress ? { dnsAnswerAddress: flags.dnsAnswerAddress } : {}),
    })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      throw new UsageError(
        `cannot listen: ${e.message}`,
        'choose another address with the listener flags',
      )
    }
    throw new UsageError(e.message)
  }

  // With --profile, edits to the profile (or anything it includes) apply to new connections.
  if (catalogue && flags.policy.kind === 'profile') {
    await followProfile({
      catalogue,
      name: flags.policy.name,
      operator: flags.operator,
      policy: proxy.context.policy,
      log: proxy.context.log.operational,
    })
    catalogue.watch()
  }

  const shown = Object.entries(proxy.addresses).map(
    ([k, a]) => `${k} ${joinAuthority(a.address, a.port)}`,
  )
  process.stderr.write(
    `isorun proxy: policy ${policy.name} (${policy.mode}); listening: ${shown.join(', ')}\n`,
  )

  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      process.stderr.write(`isorun proxy: ${signal}: draining connections (up to 10 s)\n`)
      catalogue?.close()
      void proxy.close(10_000).then((cut) => {
        process.stderr.write(
          cut === 0
            ? 'isorun proxy: every connection finished; exiting\n'
            : `isorun proxy: drain time up; closed ${cut} connection(s); exiting\n`,
        )
        resolve(0)
      })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}
