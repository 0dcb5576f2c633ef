// The TypeScript SDK against a stand-in runner on loopback (a real HTTP server
// whose answers each test chooses): what it does with streams that break, errors
// in a stream, arguments it must refuse before sending anything, and listings no
// real filesystem could produce (a compromised runner or sandbox).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  Isorun,
  IsorunApiError,
  IsorunConnectionError,
  IsorunFileError,
  IsorunUsageError,
  type Sandbox,
} from 'isorun'

type Answer = (req: http.IncomingMessage, res: http.ServerResponse) => void

const INFO = {
  id: 'sbx1',
  image: 'img',
  status: 'running',
  networkProfile: 'locked-down',
  createdAt: '2026-01-01T00:00:00Z',
  expiresAt: null,
  proxyAddress: '10.0.0.2',
}

describe('SDK against a stand-in runner', () => {
  let server: http.Server
  let answer: Answer
  let requests: string[]
  let isorun: Isorun
  let sandbox: Sandbox
  let local: string

  beforeEach(async () => {
    requests = []
    server = http.createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`)
      if (req.url === '/v1/sandboxes/sbx1' && req.method === 'GET') {
        res.setHeader('Content-Type', 'application/json')
        res.end(JSON.stringify(INFO))
        return
      }
      answer(req, res)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    isorun = new Isorun({ url: `http://127.0.0.1:${port}`, apiKey: 'k'.repeat(32) })
    sandbox = await isorun.get('sbx1')
    requests = []
    local = await mkdtemp(join(tmpdir(), 'isorun-sdk-test-'))
  })
  afterEach(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    await rm(local, { recursive: true, force: true })
  })

  const ndjson =
    (lines: object[], end = true): Answer =>
    (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson' })
      const text = lines.map((line) => `${JSON.stringify(line)}\n`).join('')
      if (end) res.end(text)
      // Cut off once what was sent has left: the connection breaks mid-stream.
      else res.write(text, () => res.socket?.destroy())
    }
  const b64 = (text: string): string => Buffer.from(text).toString('base64')

  it('spawn: output in order, heartbeats and unknown events ignored, exit status', async () => {
    answer = ndjson([
      { type: 'start', id: 'p1', pid: 7 },
      { type: 'stdout', data: b64('one ') },
      { type: 'heartbeat' },
      { type: 'stderr', data: b64('warn') },
      { type: 'something-new', x: 1 },
      { type: 'stdout', data: b64('two') },
      { type: 'exit', exitCode: 3, timedOut: false },
    ])
    const proc = await sandbox.spawn(['prog'])
    expect([proc.id, proc.pid]).toEqual(['p1', 7])
    let out = ''
    for await (const chunk of proc.stdout) out += String(chunk)
    expect(out).toBe('one two')
    expect(await proc.wait()).toEqual({ exitCode: 3, timedOut: false })
    expect(await sandbox.exec('x')).toEqual({ exitCode: 3, stdout: 'one two', stderr: 'warn' })
  })

  it('a stream that breaks off or ends without an exit status rejects wait() and ends the output', async () => {
    answer = ndjson(
      [
        { type: 'start', id: 'p1', pid: 7 },
        { type: 'stdout', data: b64('partial') },
      ],
      false,
    )
    const broken = await sandbox.spawn('x')
    let out = ''
    for await (const chunk of broken.stdout) out += String(chunk)
    expect(out).toBe('partial')
    await expect(broken.wait()).rejects.toBeInstanceOf(IsorunConnectionError)
    await expect(broken.wait()).rejects.toMatchObject({ code: 'stream-broken' })

    answer = ndjson([{ type: 'start', id: 'p2', pid: 8 }])
    await expect(sandbox.exec('x')).rejects.toMatchObject({ code: 'stream-broken' })

    answer = ndjson([{ type: 'stdout', data: b64('no start') }])
    await expect(sandbox.spawn('x')).rejects.toMatchObject({ code: 'bad-response' })
  })

  it('an error event is an IsorunApiError with its code', async () => {
    answer = ndjson([
      { type: 'start', id: 'p1', pid: 7 },
      { type: 'error', error: { code: 'sandbox-stopped', message: 'gone' } },
    ])
    const err = await sandbox.exec('x').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IsorunApiError)
    expect(err).toMatchObject({ code: 'sandbox-stopped', message: 'gone' })
  })

  it('exec keeps at most maxOutputBytes of each stream and says it cut them', async () => {
    answer = ndjson([
      { type: 'start', id: 'p1', pid: 7 },
      { type: 'stdout', data: b64('0123456789') },
      { type: 'stdout', data: b64('abcdef') },
      { type: 'exit', exitCode: 0, timedOut: false },
    ])
    expect(await sandbox.exec('x', { maxOutputBytes: 12 })).toEqual({
      exitCode: 0,
      stdout: '0123456789ab',
      stderr: '',
      truncated: true,
    })
  })

  it('refuses bad arguments before sending anything', async () => {
    answer = (_req, res) => res.end()
    await expect(
      isorun.create({ image: 'i', networkProfile: 'p', network: { allow: ['a.example'] } }),
    ).rejects.toMatchObject({ name: 'IsorunUsageError', code: 'conflicting-network' })
    await expect(sandbox.exec([] as string[])).rejects.toBeInstanceOf(IsorunUsageError)
    await expect(sandbox.files.read('relative/path')).rejects.toBeInstanceOf(IsorunUsageError)
    await expect(sandbox.files.write('/x', 'y', { mode: 0o1777 })).rejects.toBeInstanceOf(
      IsorunUsageError,
    )
    expect(requests).toEqual([])
  })

  it('download refuses names that are not one plain path segment and writes nothing for them', async () => {
    for (const name of ['..', '../escape', 'a/b', '', '.', 'nul\0']) {
      answer = (_req, res) => {
        res.setHeader('Content-Type', 'application/json')
        res.end(
          JSON.stringify({
            path: '/d',
            entries: [{ name, type: 'file', size: 1, mode: 0o644, mtime: '' }],
          }),
        )
      }
      const err = await sandbox.files.download('/d', join(local, 'target')).catch((e: unknown) => e)
      expect(err, JSON.stringify(name)).toBeInstanceOf(IsorunFileError)
      expect(err).toMatchObject({ code: 'unsafe-name' })
      // Only the list request was made: no file was fetched, none written.
      expect(requests.every((r) => r.startsWith('GET /v1/sandboxes/sbx1/files/list'))).toBe(true)
      requests = []
    }
    expect(await readdir(local)).toEqual(['target'])
    expect(await readdir(join(local, 'target'))).toEqual([])
  })
})
