// git over smart HTTP through an intercepted host, with the real git client and
// `git http-backend` (as CGI behind a loopback HTTPS server with the test CA):
// endpoint rules allow fetching (GET, and POST to git-upload-pack) and nothing
// else, so a clone works and a push is refused at POST git-receive-pack, which
// the origin never sees. git trusts only the sandbox CA (GIT_SSL_CAINFO), as in
// a sandbox, and reaches the proxy through HTTPS_PROXY.

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createCertificateAuthority } from '../../../src/tls/ca.js'
import { testCerts } from '../../helpers/certs.js'
import { loopbackNames, startTestProxy, type TestProxy } from '../../helpers/proxy.js'
import { cleanEnv, run } from '../../helpers/run.js'

let dir: string
let origin: https.Server
let proxy: TestProxy
let O: number
const seen: string[] = []
let env: NodeJS.ProcessEnv

function git(args: string[], cwd = dir): ReturnType<typeof run> {
  return run('git', ['-C', cwd, ...args], { env, timeoutMs: 30_000 })
}

/** `git http-backend` as CGI: the request in, its headers (Status:) and body out. */
function serveGit(
  req: import('node:http').IncomingMessage,
  res: import('node:http').ServerResponse,
): void {
  const url = new URL(req.url ?? '/', 'https://allowed.test')
  seen.push(`${req.method} ${url.pathname}`)
  const cgi = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: join(dir, 'srv'),
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method,
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      ...(req.headers['content-encoding']
        ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] }
        : {}),
      REMOTE_USER: 'tester',
      REMOTE_ADDR: '127.0.0.1',
    },
  })
  req.pipe(cgi.stdin)
  let head = Buffer.alloc(0)
  let started = false
  cgi.stdout.on('data', (chunk: Buffer) => {
    if (started) return void res.write(chunk)
    head = Buffer.concat([head, chunk])
    const end = head.indexOf('\r\n\r\n')
    if (end < 0) return
    started = true
    let status = 200
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':')
      const name = line.slice(0, colon).trim()
      const value = line.slice(colon + 1).trim()
      if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0])
      else res.setHeader(name, value)
    }
    res.writeHead(status)
    res.write(head.subarray(end + 4))
  })
  cgi.stdout.on('end', () => res.end())
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'isorun-intercept-git-'))
  const certs = await testCerts()
  const sandboxCa = await createCertificateAuthority({ commonName: 'intercept git sandbox' })
  writeFileSync(join(dir, 'sandbox-ca.pem'), sandboxCa.cert)
  env = cleanEnv({
    HOME: dir,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 't',
    GIT_AUTHOR_EMAIL: 't@t',
    GIT_COMMITTER_NAME: 't',
    GIT_COMMITTER_EMAIL: 't@t',
  })
  // The origin's repository: one commit, served bare, pushes enabled (the rules must stop them).
  await git(['init', '-q', '-b', 'main', join(dir, 'work')])
  writeFileSync(join(dir, 'work', 'README'), 'isorun git test\n')
  await git(['add', 'README'], join(dir, 'work'))
  await git(['commit', '-q', '-m', 'first'], join(dir, 'work'))
  await git(['clone', '-q', '--bare', join(dir, 'work'), join(dir, 'srv', 'repo.git')])
  await git(['config', 'http.receivepack', 'true'], join(dir, 'srv', 'repo.git'))
  origin = https.createServer({ key: certs.key, cert: certs.cert }, serveGit)
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  O = (origin.address() as AddressInfo).port
  proxy = await startTestProxy({
    allow: [`allowed.test:${O}`],
    endpoints: [
      {
        host: 'allowed.test',
        from: 'test',
        rules: [
          { methods: ['GET'], path: '/**', action: 'allow' },
          { methods: ['POST'], path: '/*/git-upload-pack', action: 'allow' },
        ],
      },
    ],
    resolve: loopbackNames(),
    listeners: ['http'],
    extra: { interception: { ca: sandboxCa, upstreamCa: certs.ca.toString() } },
  })
  env = {
    ...env,
    HTTPS_PROXY: `http://127.0.0.1:${proxy.port('http')}`,
    GIT_SSL_CAINFO: join(dir, 'sandbox-ca.pem'),
  }
})

afterAll(async () => {
  await proxy?.close()
  await new Promise((resolve) => origin?.close(resolve))
  if (dir) rmSync(dir, { recursive: true, force: true })
})

it('clones over smart HTTP, and a push is refused at git-receive-pack', async () => {
  const clone = await git(['clone', '-q', `https://allowed.test:${O}/repo.git`, join(dir, 'clone')])
  expect(clone.code, clone.stderr).toBe(0)
  expect(seen).toContain('POST /repo.git/git-upload-pack') // smart HTTP, not the dumb protocol
  const head = (await git(['rev-parse', 'HEAD'], join(dir, 'srv', 'repo.git'))).stdout

  writeFileSync(join(dir, 'clone', 'NEW'), 'pushed?\n')
  await git(['add', 'NEW'], join(dir, 'clone'))
  await git(['commit', '-q', '-m', 'second'], join(dir, 'clone'))
  const since = proxy.mark()
  const push = await git(['push', '-q', 'origin', 'main'], join(dir, 'clone'))
  expect(push.code).not.toBe(0)
  const refused = await proxy.waitForEvent((e) => e.action === 'deny', { since })
  expect(refused).toMatchObject({
    method: 'POST',
    path: '/repo.git/git-receive-pack',
    reason: 'no-endpoint-match',
  })
  expect(seen).not.toContain('POST /repo.git/git-receive-pack')
  expect((await git(['rev-parse', 'HEAD'], join(dir, 'srv', 'repo.git'))).stdout).toBe(head)
})
