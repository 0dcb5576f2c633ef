// Files in a sandbox through the runner's file API: one file per request as
// raw bytes, and JSON directory listings. upload() and download() walk
// directories here, on this machine, so they decide what may be written
// where: a download writes only inside its local directory whatever names or
// symlinks the sandbox returns, and an upload never follows a symlink.

import { constants } from 'node:fs'
import { lstat, mkdir, open, readdir, realpath, type FileHandle } from 'node:fs/promises'
import { join, posix, relative, sep, isAbsolute } from 'node:path'
import { Readable } from 'node:stream'
import type { Isorun } from './client.js'
import { IsorunFileError, IsorunUsageError } from './errors.js'
import type { FileEntry } from './types.js'

export type FileData =
  string | Uint8Array | Readable | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>

export interface WriteOptions {
  /** Permission bits of the file, e.g. 0o755; default 0o644. */
  mode?: number
}

/** What `upload()` or `download()` did. */
export interface TransferResult {
  files: number
  directories: number
  bytes: number
  /** Symlinks and special files that were not copied (paths on the side they were found). */
  skipped: string[]
}

export class SandboxFiles {
  constructor(
    private readonly client: Isorun,
    readonly sandboxId: string,
  ) {}

  private route(suffix: string, path: string, extra = ''): string {
    if (typeof path !== 'string' || !path.startsWith('/'))
      throw new IsorunUsageError(`files: "${String(path)}" must be an absolute path in the sandbox`)
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/files${suffix}?path=${encodeURIComponent(path)}${extra}`
  }

  /** Writes a file (replacing it), making missing parent directories. Data: bytes, text, or a stream. */
  async write(
    path: string,
    data: FileData,
    options: WriteOptions = {},
  ): Promise<{ path: string; size: number }> {
    const mode = options.mode ?? 0o644
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777)
      throw new IsorunUsageError('files.write: mode must be permission bits from 0 to 0o777')
    const url = this.route('', path, `&mode=${mode.toString(8).padStart(3, '0')}`)
    try {
      // Streams have no size up front, so this waits for the runner however long the upload takes.
      const response = await this.client.open('PUT', url, { body: toBody(data), timeoutMs: 0 })
      return (await response.json()) as { path: string; size: number }
    } catch (err) {
      throw IsorunFileError.from(err, path)
    }
  }

  /** Reads a file: a Buffer by default, a string with `format: 'text'`, a Node stream with `format: 'stream'`. */
  read(path: string, options?: { format?: 'buffer' }): Promise<Buffer>
  read(path: string, options: { format: 'text' }): Promise<string>
  read(path: string, options: { format: 'stream' }): Promise<Readable>
  async read(
    path: string,
    options: { format?: 'buffer' | 'text' | 'stream' } = {},
  ): Promise<Buffer | string | Readable> {
    try {
      const response = await this.client.open('GET', this.route('', path))
      if (options.format === 'stream') {
        if (!response.body) return Readable.from([])
        return Readable.fromWeb(response.body as import('node:stream/web').ReadableStream)
      }
      const bytes = Buffer.from(await response.arrayBuffer())
      return options.format === 'text' ? bytes.toString('utf8') : bytes
    } catch (err) {
      throw IsorunFileError.from(err, path)
    }
  }

  /** The entries of a directory (not recursive), sorted by name. */
  async list(dir: string): Promise<FileEntry[]> {
    try {
      const result = await this.client.request<{ entries: FileEntry[] }>(
        'GET',
        this.route('/list', dir),
      )
      return result.entries
    } catch (err) {
      throw IsorunFileError.from(err, dir)
    }
  }

  /** Removes a file, a symlink (not what it points to) or a directory with its contents. */
  async remove(path: string): Promise<void> {
    try {
      await this.client.request('DELETE', this.route('', path))
    } catch (err) {
      throw IsorunFileError.from(err, path)
    }
  }

  /** Makes a directory and any missing parents; an existing directory is fine. */
  async makeDir(path: string): Promise<void> {
    try {
      await this.client.request('POST', this.route('/mkdir', path))
    } catch (err) {
      throw IsorunFileError.from(err, path)
    }
  }

  /**
   * Copies a local directory tree into `dir` in the sandbox (made if missing).
   * Symlinks are skipped, never followed: nothing outside `localDir` is sent.
   */
  async upload(localDir: string, dir: string): Promise<TransferResult> {
    const root = await realpath(localDir)
    if (!(await lstat(root)).isDirectory())
      throw new IsorunFileError(`${localDir} is not a directory`, 'not-a-directory', localDir)
    const result: TransferResult = { files: 0, directories: 0, bytes: 0, skipped: [] }
    await this.makeDir(dir)
    const walk = async (local: string, remote: string): Promise<void> => {
      for (const entry of await readdir(local, { withFileTypes: true })) {
        const localPath = join(local, entry.name)
        const remotePath = posix.join(remote, entry.name)
        if (entry.isDirectory()) {
          await this.makeDir(remotePath)
          result.directories++
          await walk(localPath, remotePath)
        } else if (entry.isFile()) {
          // O_NOFOLLOW: a file swapped for a symlink since readdir is refused, not followed.
          const handle = await open(localPath, constants.O_RDONLY | constants.O_NOFOLLOW)
          try {
            const info = await handle.stat()
            await this.write(remotePath, chunksOf(handle), { mode: info.mode & 0o777 })
            result.files++
            result.bytes += info.size
          } finally {
            await handle.close()
          }
        } else {
          result.skipped.push(localPath)
        }
      }
    }
    await walk(root, dir)
    return result
  }

  /**
   * Copies `dir` from the sandbox into a local directory (made if missing).
   * Only regular files and directories are copied; symlinks and special files
   * are skipped. Every name is checked to be one plain path segment, and no
   * local path that is a symlink is written through.
   */
  async download(dir: string, localDir: string): Promise<TransferResult> {
    await mkdir(localDir, { recursive: true })
    const root = await realpath(localDir)
    const result: TransferResult = { files: 0, directories: 0, bytes: 0, skipped: [] }
    const walk = async (remote: string, local: string): Promise<void> => {
      for (const entry of await this.list(remote)) {
        const remotePath = posix.join(remote, entry.name)
        const localPath = localChild(root, local, entry.name, remotePath)
        if (entry.type === 'directory') {
          await realDirectory(localPath, remotePath)
          result.directories++
          await walk(remotePath, localPath)
        } else if (entry.type === 'file') {
          result.bytes += await this.downloadFile(remotePath, localPath, entry.mode)
          result.files++
        } else {
          result.skipped.push(remotePath)
        }
      }
    }
    await walk(dir, root)
    return result
  }

  private async downloadFile(remotePath: string, localPath: string, mode: number): Promise<number> {
    const source = await this.read(remotePath, { format: 'stream' })
    // O_NOFOLLOW: never write through a symlink that sits where the file goes.
    const handle = await open(
      localPath,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o600,
    ).catch((err: NodeJS.ErrnoException) => {
      source.destroy()
      if (err.code === 'ELOOP')
        throw new IsorunFileError(
          `${localPath} is a symlink; download does not write through symlinks`,
          'unsafe-name',
          localPath,
        )
      throw err
    })
    try {
      await handle.chmod(mode & 0o777)
      let size = 0
      for await (const chunk of source as AsyncIterable<Buffer>) {
        await handle.write(chunk)
        size += chunk.length
      }
      return size
    } finally {
      source.destroy()
      await handle.close()
    }
  }
}

/** The contents of an open file, chunk by chunk. */
async function* chunksOf(handle: FileHandle): AsyncGenerator<Uint8Array> {
  for (;;) {
    const { bytesRead, buffer } = await handle.read(Buffer.alloc(256 * 1024), 0, 256 * 1024, null)
    if (bytesRead === 0) return
    yield buffer.subarray(0, bytesRead)
  }
}

/**
 * The local path for a name from a sandbox listing: it must be one plain path
 * segment, and the result must stay inside the download's root.
 */
export function localChild(root: string, parent: string, name: string, remotePath: string): string {
  const plain =
    typeof name === 'string' &&
    name !== '' &&
    name !== '.' &&
    name !== '..' &&
    !name.includes('/') &&
    !name.includes('\0') &&
    !(sep === '\\' && name.includes('\\'))
  const path = plain ? join(parent, name) : ''
  const rel = relative(root, path)
  if (!plain || rel === '' || rel.startsWith('..') || isAbsolute(rel))
    throw new IsorunFileError(
      `the sandbox listed an entry named ${JSON.stringify(name)} under ${posix.dirname(remotePath)}, which is not a plain file name; nothing was written for it`,
      'unsafe-name',
      remotePath,
    )
  return path
}

/** Makes a local directory, or accepts an existing one that is a real directory (not a symlink). */
async function realDirectory(path: string, remotePath: string): Promise<void> {
  try {
    await mkdir(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    if (!(await lstat(path)).isDirectory())
      throw new IsorunFileError(
        `${path} exists and is not a directory (or is a symlink); download does not write through it`,
        'unsafe-name',
        remotePath,
      )
  }
}

function toBody(data: FileData): Uint8Array | ReadableStream<Uint8Array> {
  if (typeof data === 'string') return Buffer.from(data, 'utf8')
  if (data instanceof Uint8Array) return data
  if (data instanceof ReadableStream) return data
  const readable = data instanceof Readable ? data : Readable.from(data)
  return Readable.toWeb(readable) as unknown as ReadableStream<Uint8Array>
}
