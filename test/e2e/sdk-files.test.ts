// Files through the SDK on a real engine: a large binary file round-trips
// unchanged, directory trees upload and download identically, errors are typed,
// and neither the sandbox's symlinks nor hostile names reach the host.
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { performance } from 'node:perf_hooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IsorunFileError, type Sandbox } from 'isorun'
import { docker } from './setup/sh.js'
import { E2E_MAX_FILE_BYTES } from './setup/global-setup.js'
import { client, e2e, runnerContainer, skipReason } from './helpers.js'

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** Every entry under `dir`: type, permission bits and content hash, keyed by relative path. */
async function describeTree(dir: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name)
    const info = await lstat(path)
    const key = `${prefix}${name}`
    if (info.isDirectory()) {
      out[`${key}/`] = 'dir'
      Object.assign(out, await describeTree(path, `${key}/`))
    } else if (info.isSymbolicLink()) {
      out[key] = `symlink -> ${await readlink(path)}`
    } else {
      out[key] = `file ${(info.mode & 0o777).toString(8)} ${sha256(await readFile(path))}`
    }
  }
  return out
}

async function expectFileError(promise: Promise<unknown>, code: string, status?: number) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IsorunFileError)
  expect(err).toMatchObject({ code, status })
  return err as IsorunFileError
}

describe.skipIf(skipReason !== undefined)('SDK files', () => {
  let sbx: Sandbox
  let local: string
  beforeAll(async () => {
    sbx = await client().create({ image: e2e.sandboxImage, networkProfile: 'locked-down' })
    local = await mkdtemp(join(tmpdir(), 'isorun-e2e-files-'))
  })
  afterAll(async () => {
    await sbx?.destroy()
    if (local) await rm(local, { recursive: true, force: true })
  })

  it('a 50 MB random file written as a stream reads back with the same SHA-256', async () => {
    const size = 50 * 1024 * 1024
    const written = createHash('sha256')
    async function* random(): AsyncGenerator<Buffer> {
      for (let sent = 0; sent < size; sent += 1024 * 1024) {
        const chunk = randomBytes(1024 * 1024)
        written.update(chunk)
        yield chunk
      }
    }
    let t = performance.now()
    expect(await sbx.files.write('/data/big.bin', Readable.from(random()))).toEqual({
      path: '/data/big.bin',
      size,
    })
    const upMs = performance.now() - t
    t = performance.now()
    const read = createHash('sha256')
    let received = 0
    for await (const chunk of await sbx.files.read('/data/big.bin', { format: 'stream' })) {
      read.update(chunk as Buffer)
      received += (chunk as Buffer).length
    }
    const downMs = performance.now() - t
    expect(received).toBe(size)
    expect(read.digest('hex')).toBe(written.digest('hex'))
    // The sandbox sees the same bytes.
    const inside = await sbx.exec('sha256sum /data/big.bin && stat -c %s /data/big.bin')
    expect(inside.stdout).toMatch(/^[0-9a-f]{64} {2}\/data\/big\.bin\n52428800\n$/)
    process.stderr.write(
      `[figure] 50 MB file: write ${upMs.toFixed(0)} ms (${(50_000 / upMs).toFixed(0)} MB/s), read ${downMs.toFixed(0)} ms (${(50_000 / downMs).toFixed(0)} MB/s)\n`,
    )
  })

  it('buffers and text round-trip, with the mode asked for; list shows entries and types', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    await sbx.files.write('/work/all-bytes.bin', bytes)
    await sbx.files.write('/work/run.sh', '#!/bin/sh\necho ran\n', { mode: 0o755 })
    await sbx.files.write('/work/empty', '')
    expect(await sbx.files.read('/work/all-bytes.bin')).toEqual(bytes)
    expect(await sbx.files.read('/work/run.sh', { format: 'text' })).toBe('#!/bin/sh\necho ran\n')
    expect((await sbx.exec('/work/run.sh')).stdout).toBe('ran\n')
    expect(await sbx.files.read('/work/empty')).toEqual(Buffer.alloc(0))
    await sbx.exec('mkdir /work/sub && ln -s all-bytes.bin /work/link')
    const entries = await sbx.files.list('/work')
    expect(entries.map((e) => [e.name, e.type, e.size, e.mode])).toEqual([
      ['all-bytes.bin', 'file', 256, 0o644],
      ['empty', 'file', 0, 0o644],
      ['link', 'symlink', 0, 0o777],
      ['run.sh', 'file', 19, 0o755],
      ['sub', 'directory', 0, 0o755],
    ])
    expect(entries.find((e) => e.name === 'link')?.linkTarget).toBe('/work/all-bytes.bin')
    // Reading a symlink reads what it points to, inside the sandbox.
    expect(await sbx.files.read('/work/link')).toEqual(bytes)
    await sbx.files.remove('/work/sub')
    await sbx.files.remove('/work/link')
    expect((await sbx.files.list('/work')).map((e) => e.name)).toEqual([
      'all-bytes.bin',
      'empty',
      'run.sh',
    ])
  })

  it('a directory uploaded and downloaded again is identical', async () => {
    const source = join(local, 'source')
    await mkdir(join(source, 'nested/deeper/deepest'), { recursive: true })
    await mkdir(join(source, 'empty-dir'))
    await writeFile(join(source, 'empty-file'), '')
    await writeFile(join(source, 'random.bin'), randomBytes(3 * 1024 * 1024 + 7))
    await writeFile(join(source, 'nested/all-bytes.bin'), Buffer.from([...Array(256).keys()]))
    await writeFile(join(source, 'nested/deeper/deepest/note.txt'), 'deep\n')
    await writeFile(join(source, 'nested/deeper/ünïcode файл with spaces.txt'), '名前\n')
    await writeFile(join(source, '.hidden'), 'dot file\n')
    await writeFile(join(source, 'tool.sh'), '#!/bin/sh\n')
    await chmod(join(source, 'tool.sh'), 0o755)
    const up = await sbx.files.upload(source, '/uploads/tree')
    expect(up).toEqual({
      files: 7,
      directories: 4,
      bytes: 3 * 1024 * 1024 + 7 + 256 + 5 + 7 + 9 + 10,
      skipped: [],
    })
    expect(
      (await sbx.exec('cat "/uploads/tree/nested/deeper/ünïcode файл with spaces.txt"')).stdout,
    ).toBe('名前\n')

    const copy = join(local, 'copy')
    const down = await sbx.files.download('/uploads/tree', copy)
    expect(down).toEqual(up)
    expect(await describeTree(copy)).toEqual(await describeTree(source))
  })

  it('errors are typed: not-found, is-a-directory, not-a-directory, too-large, invalid-path', async () => {
    const missing = await expectFileError(sbx.files.read('/no/such/file'), 'not-found', 404)
    expect(missing.path).toBe('/no/such/file')
    expect(missing.message).toMatch(/does not exist/)
    await expectFileError(sbx.files.list('/no/such/dir'), 'not-found', 404)
    await expectFileError(sbx.files.remove('/no/such/file'), 'not-found', 404)
    await expectFileError(sbx.files.read('/etc'), 'is-a-directory', 409)
    await expectFileError(sbx.files.list('/etc/hostname'), 'not-a-directory', 409)
    await expectFileError(sbx.files.write('/etc/hostname/x', 'x'), 'not-a-directory', 409)
    await expectFileError(sbx.files.write('/etc', 'x'), 'is-a-directory', 409)
    await expectFileError(sbx.files.read('/tmp/../etc/passwd'), 'invalid-path', 400)
    // The stack's limit is 64 MiB: one byte more is refused both ways.
    await expectFileError(
      sbx.files.write('/tmp/too-big', Buffer.alloc(E2E_MAX_FILE_BYTES + 1)),
      'too-large',
      413,
    )
    await expectFileError(
      sbx.files.write('/tmp/too-big', Readable.from([Buffer.alloc(E2E_MAX_FILE_BYTES + 1)])),
      'too-large',
      413,
    )
    await sbx.exec(`head -c ${E2E_MAX_FILE_BYTES + 1} /dev/zero > /tmp/too-big`)
    await expectFileError(sbx.files.read('/tmp/too-big'), 'too-large', 413)
    expect((await sbx.exec('ls /tmp/too-big')).exitCode).toBe(0)
  })

  it("a path through the sandbox's symlinks stays in the sandbox: the host and the runner are untouched", async () => {
    const tag = `isorun-escape-${randomBytes(4).toString('hex')}`
    await sbx.exec(
      'ln -s / /tmp/root-link && ln -s /etc /tmp/etc-link && ln -s ../../../../.. /tmp/up-link',
    )
    await sbx.files.write(`/tmp/etc-link/${tag}`, 'written through a symlink')
    await sbx.files.write(`/tmp/root-link/tmp/${tag}`, 'written through a symlink')
    await sbx.files.write(`/tmp/up-link/var/${tag}`, 'written through a symlink')
    await sbx.files.makeDir(`/tmp/root-link/opt/${tag}-dir`)
    // Inside the sandbox, where the symlinks point in its own filesystem…
    expect(
      (await sbx.exec(`cat /etc/${tag} /tmp/${tag} /var/${tag} && test -d /opt/${tag}-dir`)).stdout,
    ).toBe('written through a symlink'.repeat(3))
    // …and nowhere on this host, nor in the runner's container.
    for (const path of [`/etc/${tag}`, `/tmp/${tag}`, `/var/${tag}`, `/opt/${tag}-dir`])
      expect(existsSync(path)).toBe(false)
    const runner = await runnerContainer()
    const inRunner = await docker(
      'exec',
      runner,
      'sh',
      '-c',
      `ls /etc/${tag} /tmp/${tag} /var/${tag} /opt/${tag}-dir 2>/dev/null | wc -l`,
    )
    expect(inRunner).toBe('0')
    // Reading through them reads the sandbox's files, not the host's.
    expect((await sbx.files.read('/tmp/root-link/etc/hostname', { format: 'text' })).trim()).toBe(
      `sbx-${sbx.id}`,
    )
    expect(hostname()).not.toBe(`sbx-${sbx.id}`)
  })

  it('download writes nothing outside its directory, whatever symlinks the sandbox holds', async () => {
    await sbx.exec(
      [
        'mkdir -p /tmp/evil/sub',
        'echo fine > /tmp/evil/ok.txt',
        'ln -s /etc /tmp/evil/etc-link',
        'ln -s ../../../../../../tmp /tmp/evil/up-link',
        'ln -s /etc/passwd /tmp/evil/passwd-link',
        'ln -s .. /tmp/evil/sub/parent',
      ].join(' && '),
    )
    const parent = await mkdtemp(join(local, 'download-'))
    const target = join(parent, 'target')
    const result = await sbx.files.download('/tmp/evil', target)
    expect(result.skipped.sort()).toEqual([
      '/tmp/evil/etc-link',
      '/tmp/evil/passwd-link',
      '/tmp/evil/sub/parent',
      '/tmp/evil/up-link',
    ])
    expect(await describeTree(parent)).toEqual({
      'target/': 'dir',
      'target/ok.txt': `file 644 ${sha256(Buffer.from('fine\n'))}`,
      'target/sub/': 'dir',
    })

    // A local symlink where a downloaded file would go is not written through.
    const outside = join(parent, 'outside.txt')
    await writeFile(outside, 'unchanged')
    const planted = join(parent, 'planted')
    await mkdir(planted)
    await symlink(outside, join(planted, 'ok.txt'))
    await expectFileError(sbx.files.download('/tmp/evil', planted), 'unsafe-name')
    expect(await readFile(outside, 'utf8')).toBe('unchanged')
  })

  it('upload never follows a symlink out of its directory', async () => {
    const secret = join(local, 'secret.txt')
    await writeFile(secret, 'not for the sandbox')
    const source = join(local, 'with-links')
    await mkdir(join(source, 'dir'), { recursive: true })
    await writeFile(join(source, 'dir/plain.txt'), 'plain')
    await symlink(secret, join(source, 'secret-link'))
    await symlink(local, join(source, 'dir/parent-link'))
    const result = await sbx.files.upload(source, '/tmp/with-links')
    expect(result.skipped.sort()).toEqual([
      join(source, 'dir/parent-link'),
      join(source, 'secret-link'),
    ])
    const found = await sbx.exec('cd /tmp/with-links && find . | sort && cat dir/plain.txt')
    expect(found.stdout).toBe('.\n./dir\n./dir/plain.txt\nplain')
  })
})
