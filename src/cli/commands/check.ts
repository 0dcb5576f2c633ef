// `isorun check PROFILE TARGET [--method M]`: what the proxy would decide.
// Exit 0 when allowed, 1 when denied, 2 on a usage error or an unknown profile.
// For an https:// URL it also says whether the host is intercepted, and then
// decides the method and path as the proxy does for each intercepted request.

import {
  adviseDecision,
  compilePolicy,
  decide,
  describeDecision,
  describeInterception,
  interceptionFor,
  PolicyError,
  type EgressRequest,
} from '../../policy/index.js'
import { policySpecOf } from '../../profiles/index.js'
import { parseArgs, PROFILES_DIR_OPTION, splitList, withUsage } from '../args.js'
import { openCatalogue, unknownProfile } from '../catalogue.js'
import { UsageError } from '../errors.js'
import { printJson, printTable } from '../output.js'
import { parseCheckTarget } from '../target.js'

const USAGE =
  'usage: isorun check PROFILE TARGET [--method M] [--allow-private RANGE] [--json]   (TARGET: URL, tcp://host:port or host[:port])'

export function checkCommand(argv: string[]): number {
  const { values, positionals } = withUsage(USAGE, () =>
    parseArgs({
      args: argv,
      options: {
        method: { type: 'string' },
        json: { type: 'boolean' },
        'allow-private': { type: 'string', multiple: true },
        ...PROFILES_DIR_OPTION,
      },
      allowPositionals: true,
    }),
  )
  if (positionals.length !== 2) throw new UsageError('expected a profile and a target', USAGE)
  const [profileName, targetText] = positionals as [string, string]
  const catalogue = openCatalogue(values['profiles-dir'])
  const profile = catalogue.get(profileName)
  if (!profile) throw unknownProfile(profileName, catalogue)
  const target = parseCheckTarget(targetText)

  let policy
  try {
    policy = compilePolicy(policySpecOf(profile), {
      allowSpecial: splitList(values['allow-private']),
    })
  } catch (err) {
    if (err instanceof PolicyError) throw new UsageError(err.message)
    throw err
  }
  const method = (values.method ?? 'GET').toUpperCase()
  const request: EgressRequest =
    target.scheme === 'http'
      ? { protocol: 'http', host: target.host, port: target.port, method, path: target.path ?? '/' }
      : target.scheme === 'tcp'
        ? // Bytes the proxy does not read, as SSH or a database client sends them.
          { protocol: 'connect', host: target.host, port: target.port, payload: 'other' }
        : // The name a TLS client sends as SNI is the one it connects to; check as such.
          { protocol: 'connect', host: target.host, port: target.port }
  const hostDecision = decide(request, policy)
  const interception = target.scheme === 'tls' ? interceptionFor(policy, hostDecision) : undefined
  // An intercepted request is decided again once its method and path are read.
  const decision =
    interception?.intercept && target.path !== undefined
      ? decide({ ...request, method, path: target.path }, policy)
      : hostDecision
  const advice = decision.action === 'deny' ? adviseDecision(decision, profile.name) : undefined

  if (values.json) {
    printJson({
      profile: profile.name,
      target: { host: decision.host, port: target.port },
      ...decision,
      message: describeDecision(decision),
      advice,
      ...(interception
        ? { interception: { intercepted: interception.intercept, reasons: interception.reasons } }
        : {}),
    })
  } else {
    const rows: string[][] = [
      ['profile', profile.name],
      [
        'rule',
        decision.rule === null
          ? '(none)'
          : `${decision.rule}${decision.from ? `  (from ${decision.from})` : ''}`,
      ],
      ['reason', `${decision.reason}: ${describeDecision(decision)}`],
    ]
    if (interception) rows.push(['intercepted', describeInterception(interception)])
    if (advice) rows.push(['fix', advice])
    process.stdout.write(
      `${decision.action === 'allow' ? 'ALLOW' : 'DENY'}  ${decision.host}:${target.port}\n`,
    )
    printTable(
      null,
      rows.map(([k, v]) => [`  ${k}`, v as string]),
    )
    if (decision.action === 'allow' && target.scheme === 'tls') {
      process.stdout.write(
        '  note     the proxy also checks the TLS server name and the resolved address when connecting;\n' +
          `           other protocols (SSH, databases) need a tcp: rule: check tcp://${targetText.replace(/^[a-z]+:\/\//i, '')}\n`,
      )
    }
  }
  return decision.action === 'allow' ? 0 : 1
}
