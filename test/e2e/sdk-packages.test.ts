// The SDKs as users get them, against the compose stack:
// - TypeScript: `npm pack` of sdk/typescript, installed offline into an empty
//   project, adds one package and runs no install script; the documented
//   examples (README and docs/sdk-typescript.md) compile against its types and run.
// - Python: `pip install ./sdk/python` offline into a fresh venv; its own tests
//   and the documented examples (docs/sdk-python.md) pass.
// The examples run as written, with the image and the PyPI package swapped for
// the test's local stand-ins.
import { mkdir, mkdtemp, readFile, rm, cp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run } from './setup/sh.js'
import { DEMO_PACKAGE } from './setup/wheel.js'
import { e2e, skipReason } from './helpers.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

interface Example {
  readonly name: string
  readonly code: string
}

/** Code blocks marked `<!-- example: NAME -->` in a Markdown file. */
async function examples(file: string, lang: string): Promise<Example[]> {
  const text = await readFile(join(ROOT, file), 'utf8')
  const found: Example[] = []
  const pattern = new RegExp(
    `<!-- example: ([\\w-]+) -->\\s*\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``,
    'g',
  )
  for (const m of text.matchAll(pattern)) found.push({ name: m[1] as string, code: m[2] as string })
  return found
}

/** The example with the documented image and package swapped for the local stand-ins. */
function localised(code: string): string {
  const out = code
    .replace(/(['"])python:3\.12(-slim)?\1/g, `$1${e2e.sandboxImage}$1`)
    .replace(/pip install anthropic/g, `pip install ${DEMO_PACKAGE.name}`)
  expect(out).toContain(e2e.sandboxImage)
  return out
}

/** What each documented example must print (the same for both languages). */
function checkOutput(name: string, stdout: string): void {
  switch (name) {
    case 'readme':
      expect(stdout).toMatch(/^0 \[\]/)
      break
    case 'locked-down':
      expect(stdout).toMatch(/^curl exit code: [1-9]\d*$/m)
      expect(stdout).toContain('blocked example.com:443 (denied-by-mode)')
      break
    case 'claude-code':
      expect(stdout).toMatch(/^pip exit code: 0$/m)
      expect(stdout).toMatch(/^curl exit code: [1-9]\d*$/m)
      expect(stdout).toMatch(/^blocked: .*random-site\.com/m)
      break
    case 'stream-and-files':
      expect(stdout).toContain('tick 1\ntick 2\ntick 3\n')
      expect(stdout).toMatch(/exitCode: 0, timedOut: false|exit_code=0, timed_out=False/)
      expect(stdout).toContain('HELLO FROM STDIN')
      break
    default:
      throw new Error(`no expected output for the example "${name}"`)
  }
}

const stackEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  ISORUN_URL: e2e.url,
  ISORUN_API_KEY: e2e.apiKey,
})

/** Runs one documented example as a program against the stack and checks what it prints. */
async function runExample(name: string, command: string, args: string[], cwd: string) {
  const result = await run(command, args, { cwd, env: stackEnv(), check: false })
  expect(result.stderr, name).toBe('')
  expect(result.code, `${name}: ${result.stdout}`).toBe(0)
  checkOutput(name, result.stdout)
}

describe.skipIf(skipReason !== undefined)(
  'the SDK packages, installed as users install them',
  () => {
    let work: string
    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'isorun-e2e-packages-'))
    })
    afterAll(async () => {
      if (work) await rm(work, { recursive: true, force: true })
    })

    it('TypeScript: npm pack installs offline with no dependency and no install script; the documented examples run', async () => {
      const packed = await run('npm', ['pack', '--json', '--pack-destination', work], {
        cwd: join(ROOT, 'sdk/typescript'),
      })
      const [pack] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as {
        filename: string
        files: { path: string }[]
      }[]
      for (const { path } of pack!.files)
        expect(path).toMatch(/^(package\.json|README\.md|dist\/[\w-]+\.(js|d\.ts))$/)

      const app = join(work, 'app')
      await mkdir(app)
      await writeFile(
        join(app, 'package.json'),
        JSON.stringify({ name: 'app', private: true, type: 'module' }),
      )
      // An empty cache and --offline: only the tarball itself can be installed.
      const install = await run(
        'npm',
        [
          'install',
          '--offline',
          '--no-audit',
          '--no-fund',
          '--cache',
          join(work, 'npm-cache'),
          join(work, pack!.filename),
        ],
        { cwd: app },
      )
      expect(install.stdout).toMatch(/added 1 package\b/)
      const lock = JSON.parse(await readFile(join(app, 'package-lock.json'), 'utf8')) as {
        packages: Record<string, { hasInstallScript?: boolean; dependencies?: object }>
      }
      expect(Object.keys(lock.packages).sort()).toEqual(['', 'node_modules/isorun'])
      expect(lock.packages['node_modules/isorun']).not.toHaveProperty('hasInstallScript')
      const installed = JSON.parse(
        await readFile(join(app, 'node_modules/isorun/package.json'), 'utf8'),
      ) as { dependencies?: object; scripts?: Record<string, string> }
      expect(installed.dependencies ?? {}).toEqual({})
      for (const hook of ['preinstall', 'install', 'postinstall', 'prepare'])
        expect(installed.scripts ?? {}).not.toHaveProperty(hook)

      const documented = [
        ...(await examples('README.md', 'ts')),
        ...(await examples('docs/sdk-typescript.md', 'ts')),
      ]
      expect(documented.map((e) => e.name).sort()).toEqual([
        'claude-code',
        'locked-down',
        'readme',
        'stream-and-files',
      ])
      for (const example of documented)
        await writeFile(join(app, `${example.name}.ts`), localised(example.code))
      // Compiled against the installed package's own type declarations (no skipLibCheck).
      await run(
        process.execPath,
        [
          join(ROOT, 'node_modules/typescript/bin/tsc'),
          '--strict',
          '--module',
          'nodenext',
          '--moduleResolution',
          'nodenext',
          '--target',
          'es2022',
          '--types',
          'node',
          '--typeRoots',
          join(ROOT, 'node_modules/@types'),
          '--outDir',
          join(app, 'out'),
          ...documented.map((e) => join(app, `${e.name}.ts`)),
        ],
        { cwd: app },
      )
      for (const example of documented)
        await runExample(
          example.name,
          process.execPath,
          [join(app, 'out', `${example.name}.js`)],
          app,
        )
    })

    it('Python: pip installs ./sdk/python offline into a venv; its tests and the documented examples pass', async () => {
      const venv = join(work, 'venv')
      await run('/usr/bin/python3', ['-m', 'venv', '--system-site-packages', venv])
      // From a copy, so the build leaves nothing in the source tree.
      const source = join(work, 'python-sdk')
      await cp(join(ROOT, 'sdk/python'), source, { recursive: true })
      const pip = await run(
        join(venv, 'bin/python'),
        [
          '-m',
          'pip',
          'install',
          '--no-index',
          '--no-build-isolation',
          '--disable-pip-version-check',
          source,
        ],
        { cwd: work },
      )
      expect(pip.stdout).toMatch(/Successfully installed isorun-0\.1\.0/)

      const tests = await run(
        join(venv, 'bin/python'),
        ['-W', 'error', '-m', 'unittest', 'discover', '-v', '-s', join(ROOT, 'sdk/python/tests')],
        {
          cwd: work,
          env: { ...stackEnv(), ISORUN_TEST_IMAGE: e2e.sandboxImage },
          check: false,
        },
      )
      expect(tests.code, tests.stderr).toBe(0)
      expect(tests.stderr).toMatch(/^Ran \d+ tests/m)
      expect(tests.stderr).toMatch(/^OK$/m)
      expect(tests.stderr).not.toMatch(/skipped/)

      const documented = await examples('docs/sdk-python.md', 'python')
      expect(documented.map((e) => e.name).sort()).toEqual([
        'claude-code',
        'locked-down',
        'stream-and-files',
      ])
      for (const example of documented) {
        const file = join(work, `${example.name}.py`)
        await writeFile(file, localised(example.code))
        await runExample(example.name, join(venv, 'bin/python'), ['-W', 'error', file], work)
      }
    })
  },
)
