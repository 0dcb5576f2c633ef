// Report mode and learning a profile on Docker, against the stand-in served
// under the registries' names (pypi.org, files.pythonhosted.org,
// registry.npmjs.org, github.com) and two API hosts:
//   - a report-mode sandbox reaches an allowed stand-in and one its rules would
//     refuse; the would-deny shows in networkEvents() and `isorun logs --blocked`;
//     the special-address defence still refuses;
//   - a recorded run with real pip, npm and git learns a profile that includes
//     pypi, npm and github and names the two API hosts; applied to a new sandbox
//     it lets the same commands pass and blocks a host the run never used.

import { rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { client, e2e, skipReason, waitFor, withSandbox } from './helpers.js'
import { buildImage, run } from './setup/sh.js'
import { DEMO_NPM, DEMO_REPO, STANDIN_NAMES } from './setup/registry-fixtures.js'
import { DEMO_PACKAGE } from './setup/wheel.js'

const CLI = resolve(import.meta.dirname, '../../dist/src/cli/main.js')
/** The test sandbox image plus git and npm (copied from the CI node image). */
const LEARN_IMAGE = 'isorun-e2e/learn-sandbox:latest'

function isorun(...args: string[]) {
  return run('node', [CLI, ...args], {
    check: false,
    env: { ...process.env, ISORUN_URL: e2e.url, ISORUN_API_KEY: e2e.apiKey },
  })
}

/** pip, npm and git as an agent would run them, then the two API hosts. */
const RUN = [
  'set -e',
  'cd /tmp',
  `pip install -q ${DEMO_PACKAGE.name}`,
  `python3 -c "import ${DEMO_PACKAGE.module}; print(${DEMO_PACKAGE.module}.VALUE)"`,
  'mkdir -p /tmp/app && cd /tmp/app',
  `npm install --no-audit --no-fund --no-update-notifier --loglevel=error ${DEMO_NPM.name}`,
  `node -e "console.log(require('${DEMO_NPM.name}'))"`,
  `git clone -q https://github.com/${DEMO_REPO.owner}/${DEMO_REPO.name}.git /tmp/repo`,
  `cat /tmp/repo/${DEMO_REPO.file}`,
  'curl -sS -m 20 https://api.stripe.com/hello',
  'curl -sS -m 20 https://api.openweathermap.org/hello',
].join('\n')

describe.skipIf(skipReason !== undefined)('report mode and learning on Docker', () => {
  beforeAll(async () => {
    await buildImage(LEARN_IMAGE, [
      `FROM ${e2e.sandboxImage}`,
      'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends git >/dev/null && rm -rf /var/lib/apt/lists/*',
      'COPY --from=isorun-ci/node:20 /usr/local/bin/node /usr/local/bin/node',
      'COPY --from=isorun-ci/node:20 /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm',
      'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version >/dev/null && git --version',
      '# Node reads its own CA list: point it at the test CA the image trusts.',
      'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/isorun-e2e-ca.crt',
    ])
  }, 300_000)

  it('report mode: reaches what the rules allow and what they would refuse; the would-deny is shown', async () => {
    await withSandbox({ network: { mode: 'report', allow: ['pypi.org'] } }, async (sbx) => {
      const allowed = await sbx.exec('curl -sS -m 20 https://pypi.org/hello')
      expect(allowed.exitCode, allowed.stderr).toBe(0)
      expect(allowed.stdout).toContain('stand-in for pypi.org')
      const reported = await sbx.exec('curl -sS -m 20 https://files.pythonhosted.org/hello')
      expect(reported.exitCode, reported.stderr).toBe(0)
      expect(reported.stdout).toContain('stand-in for files.pythonhosted.org')
      // The special-address defence refuses in report mode too.
      const metadata = await sbx.exec(
        'curl -sS -m 20 -o /dev/null -w "%{http_code}" http://169.254.169.254/latest/meta-data/',
      )
      expect(metadata.stdout).toBe('403')

      const wouldDeny = await sbx.networkEvents({ action: 'would-deny' })
      expect(wouldDeny).toContainEqual(
        expect.objectContaining({
          host: 'files.pythonhosted.org',
          action: 'allow',
          wouldDeny: expect.objectContaining({ reason: 'not-in-allow-list' }),
        }),
      )
      expect(wouldDeny.some((e) => e.host === 'pypi.org')).toBe(false)

      const logs = await isorun('logs', sbx.id, '--blocked')
      expect(logs.code, logs.stderr).toBe(0)
      expect(logs.stdout).toMatch(
        /WOULD-DENY\s+connect\s+files\.pythonhosted\.org:443\s+(files\.pythonhosted\.org\s+)?not-in-allow-list \(report mode: allowed\)/,
      )
      expect(logs.stdout).toMatch(/BLOCKED\s+http\s+169\.254\.169\.254:80\s.*special-address/)
      expect(logs.stdout).not.toMatch(/pypi\.org/)

      // The CLI learns from the same run: the base covers both hosts, so nothing is added.
      const learned = await isorun(
        'profiles',
        'learn',
        sbx.id,
        '--base',
        'pypi',
        '--name',
        'from-cli',
      )
      expect(learned.code, learned.stderr).toBe(0)
      expect(learned.stdout).toMatch(/^name: from-cli$/m)
      expect(learned.stdout).toMatch(/^include:\n {2}- pypi # the base profile$/m)
      expect(learned.stdout).not.toMatch(/^allow:/m)
      expect(learned.stderr).toContain('compared with pypi:')
      expect(learned.stderr).toContain('nothing to add')
      const asJson = await isorun('profiles', 'learn', sbx.id, '--json')
      expect(JSON.parse(asJson.stdout)).toMatchObject({
        include: ['pypi'],
        allow: [],
      })
    })
  })

  it('learns a profile from a run with pip, npm and git; applied, it passes the same run and blocks the rest', async () => {
    const learned = await withSandbox(
      { image: LEARN_IMAGE, network: { mode: 'report' } },
      async (sbx) => {
        const r = await sbx.exec(['sh', '-c', RUN], { timeoutMs: 240_000 })
        expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0)
        expect(r.stdout).toContain(DEMO_PACKAGE.value)
        expect(r.stdout).toContain('isorun-e2e-npm-ok')
        expect(r.stdout).toContain(DEMO_REPO.text.trim())
        return sbx.suggestProfile({ name: 'learned-e2e' })
      },
    )
    expect(learned.include).toEqual(expect.arrayContaining(['pypi', 'npm', 'github']))
    expect(learned.allow.map((r) => r.rule)).toEqual(
      expect.arrayContaining(['api.stripe.com', 'api.openweathermap.org']),
    )
    // Nothing but what was used: the includes cover the registries.
    for (const rule of learned.allow)
      expect(['api.stripe.com', 'api.openweathermap.org']).toContain(rule.rule)
    expect(learned.yaml).toMatch(/^name: learned-e2e$/m)

    // Saved in the runner's profiles directory, it is valid and live.
    await writeFile(join(e2e.profilesDir, 'learned-e2e.yaml'), learned.yaml)
    try {
      await waitFor('the runner to load the learned profile', async () =>
        (await client().networkProfiles()).some((p) => p.name === 'learned-e2e') ? true : undefined,
      )
      // Every name the run used: all the stand-in serves.
      for (const host of STANDIN_NAMES) {
        const check = await isorun(
          'check',
          'learned-e2e',
          `https://${host}/`,
          '--profiles-dir',
          e2e.profilesDir,
        )
        expect(check.code, `${host}: ${check.stdout}${check.stderr}`).toBe(0)
      }
      const never = await isorun(
        'check',
        'learned-e2e',
        'https://api.github.io/',
        '--profiles-dir',
        e2e.profilesDir,
      )
      expect(never.code).toBe(1)

      await withSandbox({ image: LEARN_IMAGE, networkProfile: 'learned-e2e' }, async (sbx) => {
        const again = await sbx.exec(['sh', '-c', RUN], { timeoutMs: 240_000 })
        expect(again.exitCode, `${again.stdout}\n${again.stderr}`).toBe(0)
        const other = await sbx.exec('curl -sS -m 20 https://example.com/')
        expect(other.exitCode).not.toBe(0)
        const refused = await sbx.networkEvents({ action: 'deny' })
        expect(refused).toContainEqual(
          expect.objectContaining({ host: 'example.com', reason: 'not-in-allow-list' }),
        )
        expect(refused.filter((e) => e.host !== 'example.com')).toEqual([])
      })
    } finally {
      await rm(join(e2e.profilesDir, 'learned-e2e.yaml'), { force: true })
    }
  })
})
