// Commands through the SDK on a real engine: output streams while the command
// runs, stdin reaches it, and a command past its timeout, killed, or whose
// client went away is gone from the sandbox afterwards, with what it started.
import http from 'node:http'
import { createHash, randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProcessStreamEvent, Sandbox } from 'isorun'
import { client, e2e, skipReason, waitFor } from './helpers.js'

/** Command lines of the processes in the sandbox that begin with `marker` (read from /proc). */
async function processesWith(sandbox: Sandbox, marker: string): Promise<string[]> {
  const r = await sandbox.exec([
    '/bin/sh',
    '-c',
    'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline" 2>/dev/null; echo; done',
  ])
  expect(r.exitCode).toBe(0)
  return r.stdout.split('\n').filter((line) => line.startsWith(marker))
}

/** Reads a stream until `text` has appeared, then pauses it (later data stays buffered). */
function readUntil(stream: NodeJS.ReadableStream, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('utf8')
      if (!seen.includes(text)) return
      stream.off('data', onData).off('end', onEnd).pause()
      resolve(seen)
    }
    const onEnd = (): void => reject(new Error(`stream ended without "${text}"; got ${seen}`))
    stream.on('data', onData).on('end', onEnd)
  })
}

describe.skipIf(skipReason !== undefined)('SDK processes', () => {
  let sbx: Sandbox
  beforeAll(async () => {
    sbx = await client().create({ image: e2e.sandboxImage, networkProfile: 'locked-down' })
  })
  afterAll(async () => {
    await sbx?.destroy()
  })

  it('streams output while the command runs: the first line arrives before it ends', async () => {
    // Lines every 200 ms for 3 s, then the command waits for a gate that the test opens
    // only once it has the first line: if output were held back until the end, the
    // command would never end and this test would time out.
    const script =
      'i=0; while [ $i -lt 15 ]; do echo line $i; i=$((i+1)); sleep 0.2; done; ' +
      'while [ ! -e /tmp/gate ]; do sleep 0.05; done; echo done'
    const started = performance.now()
    const proc = await sbx.spawn(script)
    let exited = false
    void proc.wait().then(() => (exited = true))
    let firstLineMs: number | undefined
    let output = ''
    for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
      if (firstLineMs === undefined) {
        firstLineMs = performance.now() - started
        expect(chunk.toString()).toMatch(/^line 0\n/)
        expect(exited).toBe(false)
        await sbx.exec('touch /tmp/gate')
      }
      output += chunk.toString()
    }
    const result = await proc.wait()
    const totalMs = performance.now() - started
    expect(result).toEqual({ exitCode: 0, timedOut: false })
    expect(output).toBe(`${Array.from({ length: 15 }, (_, i) => `line ${i}\n`).join('')}done\n`)
    process.stderr.write(
      `[figure] spawn → first line: ${firstLineMs?.toFixed(0)} ms; command end: ${totalMs.toFixed(0)} ms (15 lines, 200 ms apart)\n`,
    )
  })

  it('a command past its timeout is stopped with its whole process tree', async () => {
    const marker = 'sleep 100'
    const proc = await sbx.spawn(
      // A child in the group, one that left for a session of its own, and the command itself.
      'setsid sleep 1003 & sleep 1001 & echo ready; sleep 1002',
      { timeoutMs: 2000 },
    )
    await readUntil(proc.stdout, 'ready')
    expect(await proc.wait()).toEqual({ exitCode: 124, timedOut: true })
    expect(await processesWith(sbx, marker)).toEqual([])

    const r = await sbx.exec('sleep 1004 & sleep 1005', { timeoutMs: 1500 })
    expect(r).toMatchObject({ exitCode: 124, timedOut: true })
    expect(await processesWith(sbx, marker)).toEqual([])
  })

  it('kill() stops the command and everything it started; SIGTERM can be handled', async () => {
    const proc = await sbx.spawn('sleep 1011 & setsid sleep 1012 & echo ready; wait')
    await readUntil(proc.stdout, 'ready')
    expect(await processesWith(sbx, 'sleep 101')).toHaveLength(2)
    await proc.kill()
    expect(await proc.wait()).toEqual({ exitCode: 137, timedOut: false })
    expect(await processesWith(sbx, 'sleep 101')).toEqual([])
    await proc.kill() // an ended process: not an error

    const term = await sbx.spawn(
      'trap "echo bye; exit 7" TERM; echo ready; while :; do sleep 0.1; done',
    )
    await readUntil(term.stdout, 'ready')
    await term.kill('SIGTERM')
    expect(await term.wait()).toEqual({ exitCode: 7, timedOut: false })
  })

  it('a command whose client disconnected is killed after a grace period', async () => {
    const url = new URL(`/v1/sandboxes/${sbx.id}/processes`, e2e.url)
    const req = http.request(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${e2e.apiKey}`, 'Content-Type': 'application/json' },
    })
    req.end(JSON.stringify({ cmd: 'sleep 1021 & sleep 1022 & echo ready; wait' }))
    const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve))
    expect(res.headers['content-type']).toBe('application/x-ndjson')
    let text = ''
    let ready = false
    for await (const chunk of res as AsyncIterable<Buffer>) {
      text += chunk.toString()
      const events = text
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as ProcessStreamEvent)
      expect(events[0]).toMatchObject({ type: 'start' })
      ready = events.some(
        (e) => e.type === 'stdout' && Buffer.from(e.data, 'base64').toString().includes('ready'),
      )
      if (ready) break
    }
    expect(ready).toBe(true)
    expect(await processesWith(sbx, 'sleep 102')).toHaveLength(2)
    req.destroy()
    await waitFor(
      'the processes of the abandoned command to be killed',
      async () => ((await processesWith(sbx, 'sleep 102')).length === 0 ? true : undefined),
      60_000,
    )
  })

  it('stdin reaches the command as it is written, bytes unchanged, and end() closes it', async () => {
    const proc = await sbx.spawn('cat', { stdin: true })
    await proc.write('hello\n')
    // Echoed back before stdin is closed: the write went through while the command ran.
    expect(await readUntil(proc.stdout, 'hello\n')).toBe('hello\n')
    const data = randomBytes(256 * 1024)
    const echoed: Buffer[] = []
    const ended = new Promise((resolve) => proc.stdout.on('end', resolve))
    proc.stdout.on('data', (chunk: Buffer) => echoed.push(chunk)).resume()
    await proc.write(data)
    await proc.end()
    expect(await proc.wait()).toEqual({ exitCode: 0, timedOut: false })
    await ended
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
    expect(sha(Buffer.concat(echoed))).toBe(sha(data))

    expect(await sbx.exec('wc -c', { stdin: 'four' })).toMatchObject({ exitCode: 0, stdout: '4\n' })
    // Input for a command that does not read it is no error.
    expect(await sbx.exec('true', { stdin: 'x'.repeat(100_000) })).toMatchObject({ exitCode: 0 })
  })

  it('gives clear errors: unknown cwd, writing to stdin that was not opened, a bad signal', async () => {
    await expect(sbx.exec('pwd', { cwd: '/no/such/dir' })).rejects.toMatchObject({
      name: 'IsorunApiError',
      code: 'invalid-cwd',
      status: 400,
    })
    const proc = await sbx.spawn('sleep 1031')
    await expect(proc.write('x')).rejects.toMatchObject({ code: 'stdin-closed', status: 409 })
    await expect(proc.kill('SIGBOGUS' as 'SIGKILL')).rejects.toMatchObject({
      code: 'invalid-signal',
      status: 400,
    })
    await proc.kill()
    expect((await proc.wait()).exitCode).toBe(137)
    const missing = await sbx.exec(['no-such-command'])
    expect(missing.exitCode).toBe(127)
    expect(missing.stderr).toMatch(/not found/)
  })
})
