// Files in a sandbox, through the Docker Engine's archive API: a file is read
// as the first entry of a tar the engine makes, and written as a one-file tar
// the engine unpacks. The engine resolves paths inside the container's own
// filesystem (a symlink to / or /etc leads to the container's, never the
// host's) and unpacks as root, with ownership set to the container's user.
//
// Directory listings come from a /bin/sh glob in the sandbox (the archive API
// would send a whole tree), with each entry then stat'ed through the API.
// Removing needs `rm` in the image; everything else needs only /bin/sh.

import { createReadStream } from 'node:fs'
import { posix } from 'node:path'
import { Readable } from 'node:stream'
import type Docker from 'dockerode'
import type { FileEntry, FileType } from 'isorun'
import tar from 'tar-stream'
import { runShellScript } from './container-shell.js'
import { dockerMessage } from './docker.js'
import { SandboxError } from './sandboxes.js'

/** A directory with more entries than this is refused by list (the SDK walks directories entry by entry). */
export const LIST_LIMIT = 10_000
const MAX_PATH = 4096
const SYMLINK_HOPS = 16
const STAT_CONCURRENCY = 16

// Go's os.FileMode type bits, as the engine reports them (above 2^31, so no JS bitwise &).
const MODE_DIR = 31
const MODE_SYMLINK = 27
/** Irregular, char device, socket, named pipe, device. */
const MODE_OTHER = [19, 21, 24, 25, 26]

function hasBit(mode: number, bit: number): boolean {
  return Math.floor(mode / 2 ** bit) % 2 === 1
}

interface EngineStat {
  name: string
  size: number
  mode: number
  mtime: string
  linkTarget: string
}

function fileError(status: number, code: string, message: string): SandboxError {
  return new SandboxError(status, code, message)
}

/**
 * A sandbox path as the API accepts it: absolute, no `.` or `..` segments, no
 * NUL; repeated and trailing slashes dropped. Paths that could be read in two
 * ways are refused, not rewritten.
 */
export function sandboxPath(raw: string | null): string {
  if (raw === null || raw === '')
    throw fileError(400, 'invalid-path', 'give the path, e.g. ?path=/tmp/a.txt')
  if (!raw.startsWith('/')) throw fileError(400, 'invalid-path', `path "${raw}" must be absolute`)
  if (raw.includes('\0') || raw.length > MAX_PATH)
    throw fileError(400, 'invalid-path', 'path must be at most 4096 characters, without NUL')
  const segments = raw.split('/').filter((s) => s !== '')
  if (segments.some((s) => s === '.' || s === '..'))
    throw fileError(400, 'invalid-path', `path "${raw}" must not contain . or .. segments`)
  return `/${segments.join('/')}`
}

function typeOf(mode: number): FileType {
  if (hasBit(mode, MODE_DIR)) return 'directory'
  if (hasBit(mode, MODE_SYMLINK)) return 'symlink'
  if (MODE_OTHER.some((bit) => hasBit(mode, bit))) return 'other'
  return 'file'
}

function entryOf(stat: EngineStat): FileEntry {
  const type = typeOf(stat.mode)
  return {
    name: stat.name,
    type,
    size: type === 'file' ? stat.size : 0,
    mode: stat.mode % 0o1000,
    mtime: stat.mtime,
    ...(type === 'symlink' ? { linkTarget: stat.linkTarget } : {}),
  }
}

/** The engine's stat of a path (a final symlink itself, not its target), or undefined when there is none. */
async function stat(container: Docker.Container, path: string): Promise<EngineStat | undefined> {
  try {
    const res = (await container.infoArchive({ path })) as unknown as {
      headers: Record<string, string | undefined>
      resume(): void
    }
    res.resume()
    const header = res.headers['x-docker-container-path-stat']
    if (!header) throw new Error('the engine sent no path stat')
    return JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as EngineStat
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode
    // 404: no such path; 500 "not a directory": a parent is a file. Both: nothing there.
    if (status === 404 || /not a directory/i.test(dockerMessage(err))) return undefined
    throw err
  }
}

/** Follows symlinks (resolved by the engine, inside the container) to what they name. */
async function resolve(
  container: Docker.Container,
  path: string,
): Promise<{ path: string; stat: EngineStat }> {
  let current = path
  for (let hop = 0; hop <= SYMLINK_HOPS; hop++) {
    const found = await stat(container, current)
    if (!found) throw fileError(404, 'not-found', `${path} does not exist in the sandbox`)
    if (typeOf(found.mode) !== 'symlink') return { path: current, stat: found }
    current = posix.resolve(posix.dirname(current), found.linkTarget)
  }
  throw fileError(400, 'invalid-path', `${path}: too many levels of symbolic links`)
}

export interface FileContent {
  readonly size: number
  /** The file's bytes; destroy it to stop early. */
  readonly stream: Readable
}

/** Opens a file for reading: not-found, is-a-directory, not-a-file, too-large before any byte. */
export async function readFile(
  container: Docker.Container,
  path: string,
  maxBytes: number,
): Promise<FileContent> {
  const target = await resolve(container, path)
  checkReadable(path, entryOf(target.stat), maxBytes)
  const archive = (await container.getArchive({ path: target.path })) as unknown as Readable
  const extract = tar.extract()
  archive.on('error', (err) => extract.destroy(err))
  archive.pipe(extract)
  try {
    const first = await extract[Symbol.asyncIterator]().next()
    if (first.done) throw fileError(500, 'read-failed', `the engine sent no entry for ${path}`)
    const entry = first.value
    // The sandbox may have swapped the file between the stat and the read: check again.
    const type = entry.header.type
    const size = entry.header.size ?? 0
    checkReadable(
      path,
      { type: type === 'file' ? 'file' : type === 'directory' ? 'directory' : 'other', size },
      maxBytes,
    )
    // A Node stream for the HTTP layer; reading past the one entry is never needed.
    const stream = Readable.from(entry)
    stream.on('close', () => archive.destroy())
    return { size, stream }
  } catch (err) {
    archive.destroy()
    throw err
  }
}

function checkReadable(
  path: string,
  entry: Pick<FileEntry, 'type' | 'size'>,
  maxBytes: number,
): void {
  if (entry.type === 'directory')
    throw fileError(409, 'is-a-directory', `${path} is a directory; list it, or download it`)
  if (entry.type !== 'file')
    throw fileError(409, 'not-a-file', `${path} is not a regular file (a device, socket or pipe)`)
  if (entry.size > maxBytes)
    throw fileError(
      413,
      'too-large',
      `${path} is ${entry.size} bytes, more than the runner's limit of ${maxBytes} (ISORUN_MAX_FILE_BYTES)`,
    )
}

/**
 * The deepest existing directory on the way to `path`, and the directories
 * missing below it (relative, outermost first).
 */
async function existingAncestor(
  container: Docker.Container,
  path: string,
): Promise<{ base: string; missing: string[] }> {
  const missing: string[] = []
  let current = path
  for (;;) {
    const found = current === '/' ? undefined : await stat(container, current)
    if (current === '/' || found) {
      if (found && typeOf(found.mode) !== 'directory' && typeOf(found.mode) !== 'symlink')
        throw fileError(409, 'not-a-directory', `${current} exists and is not a directory`)
      return { base: current, missing }
    }
    missing.unshift(posix.basename(current))
    current = posix.dirname(current)
  }
}

/** Sends a tar to the engine to unpack at `base`; `fill` adds the entries. */
async function unpack(
  container: Docker.Container,
  base: string,
  fill: (pack: tar.Pack) => Promise<void>,
): Promise<void> {
  const pack = tar.pack()
  const filled = fill(pack).then(() => pack.finalize())
  filled.catch((err: unknown) => pack.destroy(err as Error))
  try {
    // tar-stream's streams are streamx ones: pipeable into Node's, as the engine client does.
    await container.putArchive(pack as unknown as NodeJS.ReadableStream, {
      path: base,
      noOverwriteDirNonDir: true,
      copyUIDGID: true,
    })
  } catch (err) {
    pack.destroy()
    const message = dockerMessage(err)
    if (/cannot overwrite directory|is a directory/i.test(message))
      throw fileError(409, 'is-a-directory', `a directory is in the way: ${message}`)
    if (/cannot overwrite non-directory|not a directory/i.test(message))
      throw fileError(409, 'not-a-directory', `a file is in the way: ${message}`)
    throw fileError(500, 'write-failed', `the engine could not write the file: ${message}`)
  }
  await filled
}

function addDirectories(pack: tar.Pack, missing: readonly string[]): string {
  let prefix = ''
  for (const name of missing) {
    prefix += `${name}/`
    pack.entry({ name: prefix, type: 'directory', mode: 0o755, mtime: new Date() })
  }
  return prefix
}

/** Writes `size` bytes from `file` (a spooled upload) to `path`, making missing parent directories. */
export async function writeFile(
  container: Docker.Container,
  path: string,
  file: string,
  size: number,
  mode: number,
): Promise<void> {
  if (path === '/') throw fileError(409, 'is-a-directory', '/ is a directory')
  const { base, missing } = await existingAncestor(container, posix.dirname(path))
  await unpack(container, base, async (pack) => {
    const prefix = addDirectories(pack, missing)
    const entry = pack.entry({
      name: prefix + posix.basename(path),
      type: 'file',
      size,
      mode,
      mtime: new Date(),
    })
    await new Promise<void>((done, fail) => {
      const source = createReadStream(file)
      const failed = (err: Error): void => {
        source.destroy()
        fail(err)
      }
      source.on('error', failed)
      entry.on('error', failed)
      pack.on('close', () => failed(new Error('the archive was closed before the file was sent')))
      entry.on('finish', () => done())
      source.pipe(entry)
    })
  })
}

/** Makes a directory and its missing parents; an existing directory is fine. */
export async function makeDir(container: Docker.Container, path: string): Promise<void> {
  const { base, missing } = await existingAncestor(container, path)
  if (missing.length === 0) return
  await unpack(container, base, async (pack) => {
    addDirectories(pack, missing)
  })
}

/** Lists NUL-separated names in $1 (empty for /); exit 3 when it is not a readable directory. */
const LIST_NAMES = `cd -- "\${1:-/}" 2>/dev/null && [ -r . ] || exit 3
for f in * .[!.]* ..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\\000' "$f"; fi
done`

/** The entries of a directory (not recursive), sorted by name. */
export async function listDir(container: Docker.Container, path: string): Promise<FileEntry[]> {
  const target = await resolve(container, path)
  if (typeOf(target.stat.mode) !== 'directory')
    throw fileError(409, 'not-a-directory', `${path} is not a directory`)
  const dir = target.path === '/' ? '' : target.path
  const result = await runShellScript(container, LIST_NAMES, [dir])
  if (result.exitCode === 3)
    throw fileError(403, 'permission-denied', `the sandbox's user cannot read ${path}`)
  if (result.exitCode !== 0)
    throw fileError(500, 'list-failed', `listing ${path} failed: ${result.stderr.trim()}`)
  const names = result.stdout
    .toString('utf8')
    .split('\0')
    .filter((n) => n !== '')
  if (names.length > LIST_LIMIT)
    throw fileError(413, 'too-large', `${path} has more than ${LIST_LIMIT} entries`)
  const entries: FileEntry[] = []
  for (let i = 0; i < names.length; i += STAT_CONCURRENCY) {
    const batch = names.slice(i, i + STAT_CONCURRENCY)
    const stats = await Promise.all(batch.map((name) => stat(container, `${dir}/${name}`)))
    stats.forEach((s, j) => {
      // Gone since the glob: leave it out. The name is the one the glob saw.
      if (s) entries.push({ ...entryOf(s), name: batch[j] as string })
    })
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Removes $1 recursively; exit 3 when there is nothing, 127 without rm. */
const REMOVE = `[ -e "$1" ] || [ -L "$1" ] || exit 3
command -v rm >/dev/null 2>&1 || exit 127
rm -rf -- "$1"`

/** Removes a file, a symlink (not its target) or a directory tree. */
export async function removePath(container: Docker.Container, path: string): Promise<void> {
  if (path === '/') throw fileError(400, 'invalid-path', 'refusing to remove /')
  const result = await runShellScript(container, REMOVE, [path])
  if (result.exitCode === 3)
    throw fileError(404, 'not-found', `${path} does not exist in the sandbox`)
  if (result.exitCode === 127)
    throw fileError(
      501,
      'missing-tool',
      'removing files needs rm in the sandbox image (coreutils or busybox), and this image has none',
    )
  if (result.exitCode !== 0)
    throw fileError(500, 'remove-failed', `removing ${path} failed: ${result.stderr.trim()}`)
}
