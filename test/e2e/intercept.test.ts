// The interception stage on a real engine, against the stand-in (its own test
// CA, which the proxy trusts through ISORUN_UPSTREAM_CA), with only the
// environment the sandbox gets:
//   - endpoint rules on api.github.com: a curl GET on /repos/** is allowed, a
//     POST is refused with a 403 and logged with its method and path;
//   - a host without endpoint rules, secrets or inspect stays spliced: the
//     sandbox sees the stand-in's own certificate, not the sandbox CA;
//   - a secret bound to api.anthropic.com: the stand-in receives the value, the
//     sandbox, the logs, the API and docker inspect only the placeholder; the
//     placeholder sent to another allowed host arrives as the placeholder;
//   - real clients through intercepted hosts (`inspect: true`): pip, npm, git
//     clone, curl, Python requests and Node fetch (DNS steering, no proxy
//     variables), each request logged with method, path and status;
//   - streams and git's smart HTTP through intercepted hosts with endpoint
//     rules: a git clone works and a push is refused at git-receive-pack (the
//     stand-in never sees it); a gRPC unary call (@grpc/grpc-js on both sides,
//     the client uploaded into the sandbox) gets its trailing metadata, a
//     method the rules refuse fails with PERMISSION_DENIED; a WebSocket echoes.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  e2e,
  proxyContainer,
  proxyLogLines,
  sandboxContainer,
  skipReason,
  standinRequests,
  withSandbox,
} from './helpers.js'
import { GRPC_PORT } from './fixtures/grpc-echo.js'
import { bundleFixture } from './setup/bundle-fixture.js'
import { buildImage, docker, run } from './setup/sh.js'
import { DEMO_NPM, DEMO_REPO } from './setup/registry-fixtures.js'
import { DEMO_PACKAGE } from './setup/wheel.js'

/** The test sandbox image plus git, npm and Python requests. */
const CLIENTS_IMAGE = 'isorun-e2e/intercept-sandbox:latest'

/** The issuer's common name of the certificate a TLS client in the sandbox sees for `host`. */
const ISSUER_OF = (host: string): string =>
  `python3 -c "import socket,ssl; c=ssl.create_default_context(); s=c.wrap_socket(socket.create_connection(('${host}',443),timeout=20),server_hostname='${host}'); print(dict(x[0] for x in s.getpeercert()['issuer'])['commonName'])"`

describe.skipIf(skipReason !== undefined)('TLS interception on Docker', () => {
  beforeAll(async () => {
    await buildImage(CLIENTS_IMAGE, [
      `FROM ${e2e.sandboxImage}`,
      'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends git python3-requests >/dev/null && rm -rf /var/lib/apt/lists/*',
      'COPY --from=isorun-ci/node:20 /usr/local/bin/node /usr/local/bin/node',
      'COPY --from=isorun-ci/node:20 /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm',
      'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version >/dev/null && git --version',
      '# Node reads its own CA list: point it at the test CA the image trusts.',
      'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/isorun-e2e-ca.crt',
    ])
  }, 300_000)

  it('endpoint rules, splicing and a bound secret', async () => {
    const network = {
      allow: ['api.github.com', 'api.anthropic.com', 'pypi.org'],
      endpoints: {
        'api.github.com': [
          { methods: ['GET', 'HEAD'], path: '/repos/**', action: 'allow' as const },
        ],
      },
    }
    await withSandbox({ network, secrets: ['anthropic'] }, async (sbx) => {
      const get = await sbx.exec('curl -sS -m 20 https://api.github.com/repos/isorun/isorun?page=2')
      expect(get.exitCode, get.stderr).toBe(0)
      expect(JSON.parse(get.stdout)).toMatchObject({
        method: 'GET',
        url: '/repos/isorun/isorun?page=2',
      })
      const post = await sbx.exec(
        'curl -sS -m 20 -o /dev/null -w "%{http_code}" -X POST -d x=1 https://api.github.com/repos/isorun/isorun/issues',
      )
      expect(post.stdout).toBe('403')
      const events = (await sbx.networkEvents()).filter((e) => e.host === 'api.github.com')
      expect(events).toContainEqual(
        expect.objectContaining({
          action: 'allow',
          method: 'GET',
          path: '/repos/isorun/isorun',
          status: 200,
        }),
      )
      expect(events).toContainEqual(
        expect.objectContaining({
          action: 'deny',
          method: 'POST',
          path: '/repos/isorun/isorun/issues',
        }),
      )
      const lines = await proxyLogLines(sbx)
      expect(lines).toContainEqual(
        expect.objectContaining({
          host: 'api.github.com',
          method: 'POST',
          path: '/repos/isorun/isorun/issues',
          action: 'deny',
        }),
      )

      // Spliced: the stand-in's own certificate; intercepted: a leaf of the sandbox CA.
      const spliced = await sbx.exec(ISSUER_OF('pypi.org'))
      expect(spliced.exitCode, spliced.stderr).toBe(0)
      const intercepted = await sbx.exec(ISSUER_OF('api.github.com'))
      expect(intercepted.exitCode, intercepted.stderr).toBe(0)
      expect(intercepted.stdout.trim()).not.toBe(spliced.stdout.trim())

      // The secret: the placeholder in the sandbox, the value at the bound host only.
      const placeholder = (await sbx.exec('printenv ANTHROPIC_API_KEY')).stdout.trim()
      expect(placeholder).toMatch(/^isorun-secret-anthropic-/)
      const bound = await sbx.exec(
        'curl -sS -m 20 -H "x-api-key: $ANTHROPIC_API_KEY" https://api.anthropic.com/v1/messages',
      )
      expect(JSON.parse(bound.stdout).headers['x-api-key']).toBe(e2e.secretValue)
      const elsewhere = await sbx.exec(
        'curl -sS -m 20 -H "x-api-key: $ANTHROPIC_API_KEY" https://api.github.com/repos/x/y',
      )
      expect(JSON.parse(elsewhere.stdout).headers['x-api-key']).toBe(placeholder)
      // Nowhere but at the stand-in: not the sandbox, the proxy's log, the API, docker inspect.
      const env = await sbx.exec('env')
      expect(env.stdout).not.toContain(e2e.secretValue)
      expect(JSON.stringify(await sbx.networkEvents())).not.toContain(e2e.secretValue)
      expect(JSON.stringify(lines)).not.toContain(e2e.secretValue)
      expect(JSON.stringify(await proxyLogLines(sbx))).not.toContain(e2e.secretValue)
      for (const container of [sandboxContainer(sbx), proxyContainer(sbx)])
        expect(await docker('inspect', container)).not.toContain(e2e.secretValue)
    })
  }, 180_000)

  it('real clients through intercepted hosts: pip, npm, git, curl, Python requests, Node fetch', async () => {
    const network = {
      inspect: true,
      allow: [
        'pypi.org',
        'files.pythonhosted.org',
        'registry.npmjs.org',
        'github.com',
        'api.github.com',
      ],
    }
    await withSandbox({ image: CLIENTS_IMAGE, network }, async (sbx) => {
      const script = [
        'set -e',
        'cd /tmp',
        `pip install -q ${DEMO_PACKAGE.name}`,
        'mkdir -p /tmp/app && cd /tmp/app',
        `npm install --no-audit --no-fund --no-update-notifier --loglevel=error ${DEMO_NPM.name}`,
        `git clone -q https://github.com/${DEMO_REPO.owner}/${DEMO_REPO.name}.git /tmp/repo`,
        `cat /tmp/repo/${DEMO_REPO.file}`,
        'curl -sS -m 20 https://api.github.com/repos/curl',
        `python3 -c "import requests; print(requests.get('https://api.github.com/repos/requests', timeout=20).json()['url'])"`,
        // Node's fetch ignores proxy variables: DNS steering takes it to the transparent listener.
        `env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy node -e "fetch('https://api.github.com/repos/fetch').then(r => r.json()).then(j => console.log(j.url))"`,
      ].join('\n')
      const r = await sbx.exec(['sh', '-c', script])
      expect(r.exitCode, r.stderr).toBe(0)
      expect(r.stdout).toContain(DEMO_REPO.text.trim())
      expect(r.stdout).toContain('/repos/requests')
      expect(r.stdout).toContain('/repos/fetch')
      const events = await sbx.networkEvents()
      // Every client's requests were read: method, path and status per request.
      for (const host of ['pypi.org', 'files.pythonhosted.org', 'registry.npmjs.org', 'github.com'])
        expect(events).toContainEqual(
          expect.objectContaining({ host, action: 'allow', method: 'GET', status: 200 }),
        )
      for (const path of ['/repos/curl', '/repos/requests', '/repos/fetch'])
        expect(events).toContainEqual(
          expect.objectContaining({ host: 'api.github.com', path, method: 'GET', status: 200 }),
        )
      expect(events).toContainEqual(
        expect.objectContaining({ host: 'api.github.com', path: '/repos/fetch', protocol: 'tls' }),
      )
    })
  }, 300_000)

  it('git smart HTTP, gRPC and WebSocket through intercepted hosts with endpoint rules', async () => {
    const repo = `/${DEMO_REPO.owner}/${DEMO_REPO.name}.git`
    const network = {
      inspect: true,
      allow: ['github.com', `grpc.isorun.test:${GRPC_PORT}`, 'ws.isorun.test'],
      endpoints: {
        // Fetching only: a push's POST to git-receive-pack matches no rule.
        'github.com': [
          { methods: ['GET'], path: '/**', action: 'allow' as const },
          { methods: ['POST'], path: '/*/*/git-upload-pack', action: 'allow' as const },
        ],
        'grpc.isorun.test': [
          { methods: ['POST'], path: '/isorun.e2e.Echo/Echo', action: 'allow' as const },
        ],
      },
    }
    const clients = await mkdtemp(join(tmpdir(), 'isorun-e2e-clients-'))
    try {
      await bundleFixture(
        resolve(import.meta.dirname, 'fixtures/stream-clients.ts'),
        join(clients, 'stream-clients.cjs'),
      )
      await withSandbox({ image: CLIENTS_IMAGE, network }, async (sbx) => {
        // git: clone, commit, push (refused), and the stand-in's branch is where it was.
        const git = [
          'set -e',
          `git clone -q https://github.com${repo} /tmp/repo && cd /tmp/repo`,
          'git rev-parse HEAD > /tmp/cloned',
          'echo pushed > NEW && git add NEW',
          'git -c user.name=e2e -c user.email=e2e@isorun.invalid commit -q -m push',
          'if git push -q origin main 2>/tmp/push.err; then echo PUSHED; exit 1; fi',
          'git ls-remote origin refs/heads/main | cut -f1 | diff - /tmp/cloned',
          'cat /tmp/push.err',
        ].join('\n')
        const pushed = await sbx.exec(['sh', '-c', git])
        expect(pushed.exitCode, pushed.stdout + pushed.stderr).toBe(0)
        expect(pushed.stdout).toContain('403')

        await sbx.files.upload(clients, '/tmp/clients')
        const node = (...args: string[]) =>
          sbx.exec(['node', '/tmp/clients/stream-clients.cjs', ...args])
        const target = `grpc.isorun.test:${GRPC_PORT}`
        const echo = await node('grpc', target, 'Echo', 'hello from the sandbox')
        expect(echo.exitCode, echo.stderr).toBe(0)
        expect(JSON.parse(echo.stdout)).toMatchObject({
          response: { echo: 'hello from the sandbox' },
          trailers: { 'x-served-by': 'standin' },
        })
        const secret = await node('grpc', target, 'Secret', 'x')
        expect(secret.exitCode, secret.stderr).toBe(0)
        expect(JSON.parse(secret.stdout)).toMatchObject({ code: 'PERMISSION_DENIED' })
        const ws = await node('ws', 'https://ws.isorun.test/echo', 'hi over a WebSocket')
        expect(ws.exitCode, ws.stderr).toBe(0)
        expect(JSON.parse(ws.stdout)).toEqual({ accepted: true, echo: 'echo: hi over a WebSocket' })

        const events = await sbx.networkEvents()
        const expected = [
          { host: 'github.com', action: 'allow', method: 'POST', path: `${repo}/git-upload-pack` },
          { host: 'github.com', action: 'deny', method: 'POST', path: `${repo}/git-receive-pack` },
          { host: 'grpc.isorun.test', action: 'allow', path: '/isorun.e2e.Echo/Echo', status: 200 },
          { host: 'grpc.isorun.test', action: 'deny', path: '/isorun.e2e.Echo/Secret' },
          { host: 'ws.isorun.test', action: 'allow', method: 'GET', path: '/echo' },
        ]
        for (const e of expected) expect(events).toContainEqual(expect.objectContaining(e))
        // What the proxy refused never reached the stand-in.
        const requests = await standinRequests()
        expect(requests).toContainEqual(
          expect.objectContaining({ method: 'POST', url: `${repo}/git-upload-pack` }),
        )
        expect(requests).not.toContainEqual(
          expect.objectContaining({ method: 'POST', url: `${repo}/git-receive-pack` }),
        )
        const standinLog = (await run('docker', ['logs', e2e.standinName])).stdout
        expect(standinLog).toContain(
          '"grpc":"/isorun.e2e.Echo/Echo","text":"hello from the sandbox"',
        )
        expect(standinLog).not.toContain('/isorun.e2e.Echo/Secret')
        expect(standinLog).toContain('"websocket":"/echo"')
      })
    } finally {
      await rm(clients, { recursive: true, force: true })
    }
  }, 300_000)
})
