// What the stand-in serves under registry.npmjs.org and github.com, built on
// the host: an npm package tarball (npm pack layout: package/package.json,
// package/index.js) and a bare git repository, which the stand-in serves over
// git's smart HTTP protocol with pushes enabled (only the proxy may stop them).

import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from './sh.js'

/**
 * The names the stand-in serves (its certificate covers them, the proxies map them to it):
 * PyPI, npm and GitHub as their clients use them, and two API hosts.
 */
export const STANDIN_NAMES = [
  'pypi.org',
  'files.pythonhosted.org',
  'registry.npmjs.org',
  'github.com',
  'api.stripe.com',
  'api.openweathermap.org',
] as const

/** API hosts the stand-in also serves: they echo what reached them (interception tests). */
export const API_STANDIN_NAMES = ['api.github.com', 'api.anthropic.com'] as const

/** Hosts of the stand-in's streaming services (stream-standin.ts): gRPC on its own port, WebSocket. */
export const STREAM_STANDIN_NAMES = ['grpc.isorun.test', 'ws.isorun.test'] as const

export const DEMO_NPM = { name: 'isorun-e2e-npm-demo', version: '1.0.0' }
/** Cloned as https://github.com/isorun/e2e-demo.git */
export const DEMO_REPO = {
  owner: 'isorun',
  name: 'e2e-demo',
  file: 'README.md',
  text: 'isorun e2e repo\n',
}

/** Writes `<name>-<version>.tgz` into `dir`; returns its file name. */
export async function buildNpmTarball(dir: string): Promise<string> {
  const work = join(dir, 'npm-build')
  await mkdir(join(work, 'package'), { recursive: true })
  await writeFile(
    join(work, 'package/package.json'),
    JSON.stringify({ name: DEMO_NPM.name, version: DEMO_NPM.version, main: 'index.js' }),
  )
  await writeFile(join(work, 'package/index.js'), "module.exports = 'isorun-e2e-npm-ok'\n")
  const file = `${DEMO_NPM.name}-${DEMO_NPM.version}.tgz`
  await run('tar', ['-czf', join(dir, file), '-C', work, 'package'])
  await rm(work, { recursive: true, force: true })
  return file
}

/** Makes `<dir>/git/<owner>/<name>.git`, a bare repository with one commit that accepts pushes. */
export async function buildGitRepo(dir: string): Promise<void> {
  const work = join(dir, 'git-build')
  await mkdir(work, { recursive: true })
  const git = (...args: string[]) =>
    run('git', args, {
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 'isorun',
        GIT_AUTHOR_EMAIL: 'e2e@isorun.invalid',
        GIT_COMMITTER_NAME: 'isorun',
        GIT_COMMITTER_EMAIL: 'e2e@isorun.invalid',
      },
    })
  await git('-C', work, 'init', '-q', '-b', 'main')
  await writeFile(join(work, DEMO_REPO.file), DEMO_REPO.text)
  await git('-C', work, 'add', DEMO_REPO.file)
  await git('-C', work, 'commit', '-q', '-m', 'e2e')
  const bare = join(dir, 'git', DEMO_REPO.owner, `${DEMO_REPO.name}.git`)
  await mkdir(join(dir, 'git', DEMO_REPO.owner), { recursive: true })
  await git('clone', '-q', '--bare', work, bare)
  await git('-C', bare, 'config', 'http.receivepack', 'true')
  await rm(work, { recursive: true, force: true })
}
