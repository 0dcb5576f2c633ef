// `isorun proxy` as a process (the built CLI in dist/, so run `npm run build`
// first; `npm test` does): --allow/--deny comma lists, --resolve,
// --allow-private, --profile with --profiles-dir, one JSON line per decision
// on stdout (blocked always, allowed unless --no-log-allowed), garbage input,
// and SIGTERM: stop accepting, drain, exit 0.

import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkBuilt, ROOT, tscOutput } from '../../helpers/build.js'
import { parseResponses, RawClient } from '../../helpers/clients.js'
import {
  curl,
  CURL_PROXY_ERROR,
  jsonLines,
  run,
  spawnProcess,
  type Spawned,
} from '../../helpers/run.js'
import {
  BANNER,
  startBannerServer,
  startHttpEcho,
  type EchoBody,
  type HttpEcho,
  type Upstream,
} from '../../helpers/upstreams.js'

const CLI = join(ROOT, 'dist/src/cli/main.js')

let echo: HttpEcho
let banner: Upstream
let H: number
let S: number
const started: Spawned[] = []
let profilesDir: string

beforeAll(async () => {
  checkBuilt(tscOutput)
  echo = await startHttpEcho()
  banner = await startBannerServer()
  H = echo.port
  S = banner.port
  profilesDir = mkdtempSync(join(tmpdir(), 'isorun-test-profiles-'))
  writeFileSync(
    join(profilesDir, 'isorun-test.yaml'),
    [
      '# A profile for the CLI test.',
      'name: isorun-test',
      'description: PyPI and the Anthropic API on the test echo port',
      'mode: allow-list',
      'allow:',
      `  - pypi.org:${H}`,
      `  - api.anthropic.com:${H}`,
      '',
    ].join('\n'),
  )
})

afterAll(async () => {
  for (const p of started) p.kill('SIGKILL')
  await Promise.all([echo?.close(), banner?.close()])
  if (profilesDir) rmSync(profilesDir, { recursive: true, force: true })
})

interface Cli {
  readonly proc: Spawned
  readonly http: number
  readonly socks: number
}

const RESOLVE = [
  'allowed.test',
  'other.allowed.test',
  'blocked.allowed.test',
  'evil.test',
  'ssh.test',
  'pypi.org',
  'api.anthropic.com',
].flatMap((n) => ['--resolve', `${n}=127.0.0.1`])

async function startCli(args: string[]): Promise<Cli> {
  const proc = spawnProcess(process.execPath, [
    CLI,
    'proxy',
    '--http',
    '127.0.0.1:0',
    '--socks',
    '127.0.0.1:0',
    ...RESOLVE,
    ...args,
  ])
  started.push(proc)
  const m = await proc.waitForStderr(/listening: .*\n/)
  const port = (kind: string): number =>
    Number(new RegExp(`${kind} 127\\.0\\.0\\.1:(\\d+)`).exec(m[0])?.[1] ?? NaN)
  return { proc, http: port('http'), socks: port('socks') }
}

async function get(cli: Cli, url: string): Promise<{ status: number; body: string }> {
  const r = await curl(['-i', '-x', `http://127.0.0.1:${cli.http}`, url])
  expect(r.code, r.stderr).toBe(0)
  const [res] = parseResponses(Buffer.from(r.stdout, 'latin1'))
  return { status: res?.status ?? 0, body: res?.body ?? '' }
}

const decisionLines = (lines: Record<string, unknown>[]): Record<string, unknown>[] =>
  lines.filter((l) => l.msg === 'allowed' || l.msg === 'blocked')

describe('isorun proxy --allow/--deny', () => {
  let cli: Cli

  beforeAll(async () => {
    cli = await startCli([
      '--allow',
      `allowed.test:${H},other.allowed.test:${H}`,
      '--allow',
      `tcp:ssh.test:${S}`,
      '--deny',
      'blocked.allowed.test:*',
      '--allow-private',
      'loopback',
      '--sandbox-id',
      'sbx-cli-test',
    ])
  })

  it('prints the listening line on stderr and nothing but JSON on stdout', async () => {
    expect(cli.http).toBeGreaterThan(0)
    expect(cli.socks).toBeGreaterThan(0)
    expect(cli.proc.stderr()).toMatch(/policy custom \(allow-list\)/)
    await cli.proc.waitForStdoutLines((lines) => lines.some((l) => l.msg === 'proxy started'))
  })

  it('an allowed request works and is one "allowed" line with every field', async () => {
    const res = await get(cli, `http://allowed.test:${H}/cli-allowed`)
    expect(res.status).toBe(200)
    expect((JSON.parse(res.body) as EchoBody).url).toBe('/cli-allowed')
    const lines = await cli.proc.waitForStdoutLines((ls) =>
      ls.some((l) => l.path === '/cli-allowed'),
    )
    const line = lines.filter((l) => l.path === '/cli-allowed')
    expect(line).toHaveLength(1)
    expect(line[0]).toMatchObject({
      level: 'info',
      msg: 'allowed',
      sandbox: 'sbx-cli-test',
      profile: 'custom',
      protocol: 'http',
      host: 'allowed.test',
      port: H,
      method: 'GET',
      action: 'allow',
      rule: `allowed.test:${H}`,
      reason: 'allowed-by-rule',
      address: '127.0.0.1',
    })
    expect(line[0]?.bytesDown).toBeGreaterThan(0)
    expect(typeof line[0]?.time).toBe('string')
    expect(typeof line[0]?.durationMs).toBe('number')
  })

  it('the second entry of a comma list and the SOCKS port work too', async () => {
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${cli.socks}`,
      `http://other.allowed.test:${H}/cli-socks`,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect((JSON.parse(r.stdout) as EchoBody).url).toBe('/cli-socks')
    await cli.proc.waitForStdoutLines((ls) =>
      ls.some((l) => l.path === '/cli-socks' && l.protocol === 'socks'),
    )
  })

  it('refusals: the 403 body names the rule; one "blocked" line each', async () => {
    const notListed = await get(cli, `http://evil.test:${H}/cli-evil`)
    expect(notListed.status).toBe(403)
    expect(notListed.body).toContain('host: evil.test\n')
    expect(notListed.body).toContain('profile: custom\n')
    const denied = await get(cli, `http://blocked.allowed.test:${H}/cli-blocked`)
    expect(denied.status).toBe(403)
    expect(denied.body).toContain('rule: blocked.allowed.test:*')
    const socks = await curl([
      '--socks5-hostname',
      `127.0.0.1:${cli.socks}`,
      `http://evil.test:${H}/`,
    ])
    expect(socks.code).toBe(CURL_PROXY_ERROR)
    const lines = await cli.proc.waitForStdoutLines(
      (ls) => decisionLines(ls).filter((l) => l.msg === 'blocked').length >= 3,
    )
    const blocked = lines.filter((l) => l.msg === 'blocked')
    expect(blocked.map((l) => [l.level, l.host, l.reason, l.protocol])).toEqual([
      ['warn', 'evil.test', 'not-in-allow-list', 'http'],
      ['warn', 'blocked.allowed.test', 'denied-by-rule', 'http'],
      ['warn', 'evil.test', 'not-in-allow-list', 'socks'],
    ])
    expect(blocked[1]).toMatchObject({ rule: 'blocked.allowed.test:*', path: '/cli-blocked' })
  })

  it('garbage on both ports does not stop the process', async () => {
    for (const port of [cli.http, cli.socks]) {
      const client = await RawClient.connect(port)
      client.write(Buffer.from('\x16\x03\x01\xff\xff garbage \x00\x01\x02\r\n\r\n'))
      await client.waitForClose()
    }
    expect(cli.proc.child.exitCode).toBeNull()
    expect((await get(cli, `http://allowed.test:${H}/after-garbage`)).status).toBe(200)
  })

  it('SIGTERM: stops accepting, lets the open tunnel finish, exits 0 and logs it', async () => {
    const tunnel = await RawClient.connect(cli.http)
    tunnel.write(`CONNECT ssh.test:${S} HTTP/1.1\r\nHost: ssh.test:${S}\r\n\r\n`)
    await tunnel.waitForText(BANNER)

    // An idle kept-alive HTTP connection: nothing in flight, so draining closes it.
    const idle = await RawClient.connect(cli.http)
    idle.write(`GET http://allowed.test:${H}/keep HTTP/1.1\r\nHost: allowed.test:${H}\r\n\r\n`)
    await idle.waitFor((d) => parseResponses(d).length === 1)

    cli.proc.kill('SIGTERM')
    await cli.proc.waitForStderr(/SIGTERM: draining/)
    await idle.waitForClose()
    // No new connections (the stderr line is written just before the listeners close, so
    // allow a moment; the limit is only a safety net).
    const tryConnect = (): Promise<string> =>
      new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: cli.http })
        s.once('connect', () => {
          s.destroy()
          resolve('connected')
        })
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
      })
    let refused = await tryConnect()
    for (const deadline = Date.now() + 15_000; refused === 'connected' && Date.now() < deadline;) {
      await sleep(50)
      refused = await tryConnect()
    }
    expect(refused).toBe('ECONNREFUSED')
    // The open tunnel still carries data while draining.
    tunnel.write('during drain')
    await tunnel.waitForText('echo:during drain')
    expect(cli.proc.child.exitCode).toBeNull()

    tunnel.destroy()
    const exit = await cli.proc.exited
    expect(exit).toEqual({ code: 0, signal: null })
    // It exited because the tunnel ended, not because the 10 s drain limit ran out.
    expect(cli.proc.stderr()).toContain('every connection finished; exiting')
    const lines = jsonLines(cli.proc.stdout())
    expect(lines.find((l) => l.host === 'ssh.test')).toMatchObject({
      msg: 'allowed',
      protocol: 'connect',
      port: S,
      bytesUp: 'during drain'.length,
    })
  })
})

describe('isorun proxy --no-log-allowed', () => {
  it('logs refusals only', async () => {
    const cli = await startCli([
      '--allow',
      `allowed.test:${H}`,
      '--allow-private',
      'loopback',
      '--no-log-allowed',
    ])
    expect((await get(cli, `http://allowed.test:${H}/quiet`)).status).toBe(200)
    expect((await get(cli, `http://evil.test:${H}/loud`)).status).toBe(403)
    const lines = await cli.proc.waitForStdoutLines((ls) => ls.some((l) => l.path === '/loud'))
    // The allowed request finished before the refused one started, so its line would be here.
    expect(decisionLines(lines).map((l) => [l.msg, l.path])).toEqual([['blocked', '/loud']])
    cli.proc.kill('SIGTERM')
    expect((await cli.proc.exited).code).toBe(0)
  })
})

describe('isorun proxy without --allow-private', () => {
  it('a name that resolves to loopback is refused as special-address', async () => {
    const cli = await startCli(['--allow', `allowed.test:${H}`])
    const before = echo.connections()
    const res = await get(cli, `http://allowed.test:${H}/`)
    expect(res.status).toBe(403)
    expect(res.body).toContain('reason: special-address')
    expect(echo.connections()).toBe(before)
    cli.proc.kill('SIGTERM')
    expect((await cli.proc.exited).code).toBe(0)
  })
})

describe('isorun proxy --profile', () => {
  it('uses a profile from --profiles-dir', async () => {
    const cli = await startCli([
      '--profile',
      'isorun-test',
      '--profiles-dir',
      profilesDir,
      '--allow-private',
      'loopback',
    ])
    expect(cli.proc.stderr()).toMatch(/policy isorun-test \(allow-list\)/)
    const ok = await get(cli, `http://pypi.org:${H}/simple/requests/`)
    expect(ok.status).toBe(200)
    expect((JSON.parse(ok.body) as EchoBody).url).toBe('/simple/requests/')
    const refused = await get(cli, `http://evil.test:${H}/`)
    expect(refused.status).toBe(403)
    expect(refused.body).toContain('profile: isorun-test\n')
    const lines = await cli.proc.waitForStdoutLines((ls) => decisionLines(ls).length >= 2)
    expect(decisionLines(lines).map((l) => [l.profile, l.host, l.action])).toEqual([
      ['isorun-test', 'pypi.org', 'allow'],
      ['isorun-test', 'evil.test', 'deny'],
    ])
    cli.proc.kill('SIGTERM')
    expect((await cli.proc.exited).code).toBe(0)
  })

  it('an unknown profile is a usage error (exit 2) that lists the known ones', async () => {
    const r = await run(process.execPath, [
      CLI,
      'proxy',
      '--profile',
      'no-such-profile',
      '--profiles-dir',
      profilesDir,
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('unknown profile "no-such-profile"')
    expect(r.stderr).toContain('isorun-test')
  })
})

describe('usage errors', () => {
  it.each([
    [['--allow', 'a.test', '--profile', 'pypi'], 'exactly one policy'],
    [['--allow', 'a.test', '--resolve', 'nonsense'], '--resolve "nonsense"'],
    [['--allow', 'a.test', '--resolve', 'a.test=not-an-ip'], 'must be an IP address'],
    [['--allow', '*.com'], 'public suffix'],
    [['--allow', 'a.test', '--allow-private', 'somewhere'], 'somewhere'],
  ])('%j: exit 2 with a message', async (args, message) => {
    const r = await run(process.execPath, [CLI, 'proxy', '--http', '127.0.0.1:0', ...args])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(message)
  })
})

describe('isorun proxy interception flags', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'isorun-cli-interception-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('--ca-dir makes a CA once (key 0600), --secrets prints placeholders, GET /interception shows neither key nor value', async () => {
    const caDir = join(dir, 'ca')
    const secretsFile = join(dir, 'secrets.yaml')
    const value = 'sk-ant-CLI-SECRET-VALUE'
    writeFileSync(
      secretsFile,
      [
        'secrets:',
        '  anthropic:',
        '    env: ANTHROPIC_API_KEY',
        '    from: { env: TEST_SECRET_VALUE }',
        '    hosts: [api.anthropic.com]',
        '    header: x-api-key',
        '',
      ].join('\n'),
    )
    const token = 'cli-interception-token-0123456789'
    const start = async (): Promise<{ proc: Spawned; admin: number }> => {
      const proc = spawnProcess(
        process.execPath,
        [CLI, 'proxy', '--allow', 'api.anthropic.com', '--http', '127.0.0.1:0'].concat([
          '--admin',
          '127.0.0.1:0',
          '--ca-dir',
          caDir,
          '--secrets',
          secretsFile,
        ]),
        { ...process.env, TEST_SECRET_VALUE: value, ISORUN_ADMIN_TOKEN: token },
      )
      started.push(proc)
      const m = await proc.waitForStderr(/listening: .*\n/)
      return { proc, admin: Number(/admin 127\.0\.0\.1:(\d+)/.exec(m[0])?.[1]) }
    }
    const first = await start()
    expect(first.proc.stderr()).toContain(
      `interception CA created: trust ${join(caDir, 'ca.pem')} in the clients`,
    )
    const placeholder =
      /set ANTHROPIC_API_KEY=(isorun-secret-anthropic-[0-9a-f]{32}) in the clients/.exec(
        first.proc.stderr(),
      )?.[1]
    expect(placeholder).toBeDefined()
    expect(statSync(join(caDir, 'ca.key')).mode & 0o777).toBe(0o600)
    expect(statSync(caDir).mode & 0o777).toBe(0o700)
    const r = await fetch(`http://127.0.0.1:${first.admin}/interception`, {
      headers: { Authorization: `Bearer ${token}` },
    })
    const text = await r.text()
    expect(r.status).toBe(200)
    expect(text).not.toContain(value)
    expect(text).not.toContain('PRIVATE KEY')
    expect(JSON.parse(text)).toMatchObject({
      secrets: [{ name: 'anthropic', placeholder, hosts: ['api.anthropic.com'] }],
    })
    const fingerprint = (JSON.parse(text) as { ca: { fingerprint: string } }).ca.fingerprint
    first.proc.kill('SIGTERM')
    await first.proc.exited
    expect(first.proc.stdout() + first.proc.stderr()).not.toContain(value)

    // The second start loads the same CA.
    const second = await start()
    expect(second.proc.stderr()).toContain('interception CA loaded')
    const again = (await (
      await fetch(`http://127.0.0.1:${second.admin}/interception`, {
        headers: { Authorization: `Bearer ${token}` },
      })
    ).json()) as { ca: { fingerprint: string } }
    expect(again.ca.fingerprint).toBe(fingerprint)
    second.proc.kill('SIGTERM')
    await second.proc.exited
  })

  it.each([
    [
      ['--ca-cert', '/nonexistent/ca.pem', '--ca-key', '/nonexistent/ca.key'],
      /--ca-cert \/nonexistent\/ca\.pem: ENOENT/,
    ],
    [['--ca-cert', '/etc/hostname'], /--ca-cert and --ca-key go together/],
    [['--ca-cert', '/etc/hostname', '--ca-key', '/etc/hostname'], /not a PEM certificate/],
    [['--upstream-ca', '/etc/hostname'], /holds no PEM certificate/],
    [['--dns-ttl-min', 'soon'], /--dns-ttl-min "soon": write whole seconds/],
    [['--dns-ttl-min', '60', '--dns-ttl-max', '10'], /--dns-ttl-min \(60\) is above --dns-ttl-max/],
    [['--upstream-dns', 'dns.example'], /--upstream-dns "dns.example": write an IP address/],
  ])('refuses %j with a usage error', async (args, message) => {
    const r = await run(process.execPath, [
      CLI,
      'proxy',
      '--allow',
      'a.test',
      '--http',
      '127.0.0.1:0',
      ...args,
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })
})
