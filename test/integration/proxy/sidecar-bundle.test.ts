// The sidecar's bundle (dist/isorun-proxy.mjs, built by `npm run build`) as the
// runner starts it: the node flags and arguments of proxyContainerSpec(), with
// loopback listeners instead of the sandbox network's address. It must refuse
// everything until a policy comes through the admin API, then serve that
// policy over real sockets and log its decisions, like `isorun proxy`.

import { randomBytes } from 'node:crypto'
import { basename, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  PROXY_PORTS,
  proxyArguments,
  proxyContainerSpec,
  SIDECAR_PROGRAM,
  type ProxyListenFlags,
  type ProxySettings,
} from '../../../src/runner/container-specs.js'
import { ProxyAdmin } from '../../../src/runner/proxy-admin.js'
import { checkBuilt, ROOT } from '../../helpers/build.js'
import { parseResponses } from '../../helpers/clients.js'
import { cleanEnv, curl, run, spawnProcess, type Spawned } from '../../helpers/run.js'
import { startHttpEcho, type EchoBody, type HttpEcho } from '../../helpers/upstreams.js'

/** The bundle in this checkout; the image has the same file at SIDECAR_PROGRAM. */
const BUNDLE = join(ROOT, 'dist', basename(SIDECAR_PROGRAM))
const SANDBOX = 'sbx-bundle-test'
const TOKEN = randomBytes(16).toString('hex')

const SETTINGS: ProxySettings = {
  id: SANDBOX,
  logAllowed: true,
  // The test's upstream is on loopback, which a sidecar refuses unless the operator opens it.
  allowPrivate: ['loopback'],
  blocked: [],
  dnsTtl: { minSeconds: 5, maxSeconds: 300 },
}

/** What the runner puts in the proxy container: the program and its node flags. */
const spec = proxyContainerSpec({
  ...SETTINGS,
  image: 'isorun:local',
  subnet: {
    subnet: '10.231.4.0/29',
    gateway: '10.231.4.1',
    proxy: '10.231.4.2',
    sandbox: '10.231.4.3',
  },
  token: TOKEN,
  labels: {},
  extraHosts: [],
})

let echo: HttpEcho
let sidecar: Spawned
let httpPort: number
let admin: ProxyAdmin

beforeAll(async () => {
  checkBuilt(() => 'dist/isorun-proxy.mjs')
  echo = await startHttpEcho()
  const [node, ...rest] = spec.Entrypoint as string[]
  const nodeFlags = rest.slice(0, -1)
  expect(node).toBe('node')
  // Every listener on port 0 of loopback; the listening line on stderr says where each is.
  const listen = Object.fromEntries(
    Object.keys(PROXY_PORTS).map((kind) => [kind, '127.0.0.1:0']),
  ) as ProxyListenFlags
  sidecar = spawnProcess(
    process.execPath,
    [
      ...nodeFlags,
      BUNDLE,
      ...proxyArguments(SETTINGS, listen),
      // The container has the operator's host entries; here the test's names map to loopback.
      ...['allowed.test', 'evil.test'].flatMap((n) => ['--resolve', `${n}=127.0.0.1`]),
    ],
    cleanEnv({ ISORUN_ADMIN_TOKEN: TOKEN, NODE_ENV: 'production' }),
  )
  const listening = (await sidecar.waitForStderr(/listening: .*\n/))[0]
  const port = (kind: string): number =>
    Number(new RegExp(`${kind} 127\\.0\\.0\\.1:(\\d+)`).exec(listening)?.[1] ?? NaN)
  httpPort = port('http')
  admin = new ProxyAdmin(`http://127.0.0.1:${port('admin')}`, TOKEN)
})

afterAll(async () => {
  sidecar?.kill('SIGKILL')
  await echo?.close()
})

async function get(url: string): Promise<{ status: number; body: string }> {
  const r = await curl(['-i', '-x', `http://127.0.0.1:${httpPort}`, url])
  expect(r.code, r.stderr).toBe(0)
  const [res] = parseResponses(Buffer.from(r.stdout, 'latin1'))
  return { status: res?.status ?? 0, body: res?.body ?? '' }
}

describe('the sidecar bundle, started as the runner starts it', () => {
  it('is the program of the proxy container, with the sidecar arguments', () => {
    expect(spec.Entrypoint?.at(-1)).toBe(SIDECAR_PROGRAM)
    expect(SIDECAR_PROGRAM).toBe('/app/dist/isorun-proxy.mjs')
    expect(spec.Cmd?.[0]).toBe('proxy')
    expect(spec.Cmd).toContain('--wait-for-policy')
  })

  it('refuses everything until the runner sends a policy', async () => {
    expect(sidecar.stderr()).toMatch(/policy pending \(deny-all\)/)
    const res = await get(`http://allowed.test:${echo.port}/before-policy`)
    expect(res.status).toBe(403)
  })

  it('serves the policy pushed through its admin API, over real sockets', async () => {
    await admin.setPolicy(
      {
        name: 'custom',
        mode: 'allow-list',
        allow: [{ rule: `allowed.test:${echo.port}`, from: 'custom' }],
        deny: [],
      },
      { network: { allow: [`allowed.test:${echo.port}`] } },
    )
    const allowed = await get(`http://allowed.test:${echo.port}/through-the-bundle`)
    expect(allowed.status).toBe(200)
    expect((JSON.parse(allowed.body) as EchoBody).url).toBe('/through-the-bundle')
    const refused = await get(`http://evil.test:${echo.port}/not-listed`)
    expect(refused.status).toBe(403)
    expect(refused.body).toContain('host: evil.test\n')
  })

  it('logs each decision as a JSON line with the sandbox id', async () => {
    const lines = await sidecar.waitForStdoutLines((ls) => ls.some((l) => l.path === '/not-listed'))
    const decisions = lines.filter((l) => l.msg === 'allowed' || l.msg === 'blocked')
    expect(decisions.map((l) => [l.msg, l.host, l.path, l.sandbox])).toEqual([
      ['blocked', 'allowed.test', '/before-policy', SANDBOX],
      ['allowed', 'allowed.test', '/through-the-bundle', SANDBOX],
      ['blocked', 'evil.test', '/not-listed', SANDBOX],
    ])
  })

  it('runs only the proxy command, and says so', async () => {
    const r = await run(process.execPath, [BUNDLE, 'runner'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('this program runs only "isorun proxy" (got "runner")')
  })
})
