// The sandbox's trust files on Docker, without host bind mounts (the runner
// itself runs in a container): a volume per sandbox, mounted read-only in the
// sandbox, filled with the Engine API's archive upload through a writer
// container that mounts it read-write and is never started (an upload into a
// read-only mount is refused, and one into the proxy would wait for the proxy's
// start). The image's own CA bundle is read from the sandbox container before
// it starts, following symlinks (/etc/ssl/cert.pem → certs/…).

import { posix } from 'node:path'
import type { Readable } from 'node:stream'
import { extract, pack } from 'tar-stream'
import { SYSTEM_BUNDLE_PATHS } from '../tls/sandbox-trust.js'
import { TRUST_WRITER_MOUNT, trustWriterSpec } from './container-specs.js'
import { isNotFound, type Docker } from './docker.js'

/** A bundle larger than this is not a CA bundle. */
const MAX_BUNDLE_BYTES = 8 * 1024 * 1024
const MAX_SYMLINKS = 8

type Container = ReturnType<Docker['getContainer']>

/**
 * The first entry of a tar stream: a file's text, or a symlink's target. The stream is
 * always destroyed: what follows the first entry is never read, and an engine response
 * left half-read keeps its connection open (a socket per create, and a runner that
 * cannot exit).
 */
async function firstEntry(
  stream: Readable,
): Promise<{ kind: 'file'; text: string } | { kind: 'link'; target: string } | undefined> {
  const tar = extract()
  // A connection that breaks mid-archive fails the read instead of leaving it waiting.
  stream.once('error', (err) => tar.destroy(err))
  stream.pipe(tar)
  try {
    for await (const entry of tar) {
      const { type, linkname, size } = entry.header
      if (type === 'symlink' && linkname) return { kind: 'link', target: linkname }
      if (type !== 'file' || (size ?? 0) > MAX_BUNDLE_BYTES) return undefined
      const chunks: Buffer[] = []
      for await (const chunk of entry) chunks.push(chunk as Buffer)
      return { kind: 'file', text: Buffer.concat(chunks).toString('utf8') }
    }
    return undefined
  } finally {
    tar.destroy()
    stream.destroy()
  }
}

/** The image's CA bundle, read from a created (not yet started) container; undefined when it has none. */
export async function readImageBundle(
  container: Container,
): Promise<{ path: string; text: string } | undefined> {
  for (const candidate of SYSTEM_BUNDLE_PATHS) {
    let path: string = candidate
    for (let hop = 0; hop <= MAX_SYMLINKS; hop++) {
      let stream: Readable
      try {
        stream = (await container.getArchive({ path })) as Readable
      } catch (err) {
        if (isNotFound(err)) break
        throw err
      }
      const entry = await firstEntry(stream)
      if (!entry) break
      if (entry.kind === 'file') return { path: candidate, text: entry.text }
      path = posix.resolve(posix.dirname(path), entry.target)
    }
  }
  return undefined
}

/**
 * Writes the files into the sandbox's volume through a writer container (made
 * from `image`, never started, no network). The caller removes the writer
 * (trustWriterName in container-specs.ts) when it likes; it holds nothing but the mount.
 */
export async function writeTrustFiles(
  docker: Docker,
  id: string,
  image: string,
  labels: Record<string, string>,
  files: Readonly<Record<string, Buffer>>,
): Promise<void> {
  const tar = pack()
  for (const [name, content] of Object.entries(files))
    tar.entry({ name, mode: 0o444, mtime: new Date() }, content)
  tar.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of tar) chunks.push(chunk as Buffer)
  const writer = await docker.createContainer(trustWriterSpec(id, image, labels))
  await writer.putArchive(Buffer.concat(chunks), { path: TRUST_WRITER_MOUNT })
}
