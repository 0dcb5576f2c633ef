// npm run bench:holds — the proxy's memory while connections are held for an
// approval, and after they are answered: `isorun proxy` (a child process,
// with its inspector open) holds ROUNDS × 50 concurrent CONNECT tunnels to
// names no rule allows (`onUnknown: ask`); each round waits until all 50 are
// pending, reads the live heap after a full collection, answers them through
// the admin API (half once, half deny), closes the clients, and reads the
// heap again. Prints the figures, and checks that the heap after each round
// is back to the baseline (within 2 MiB) and that nothing reached the
// upstream while held. Loopback only; the clients and the upstream run here.
// Warm-up rounds first fill what is bounded by design (the decision log keeps
// its last 1,000 events for the admin API: about 40 rounds), so that the
// baseline is the proxy's steady state.
//
// Options: --rounds N (default 10), --warmup N (default 50), --json

import net from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { heapAfterGc, inspectFlag } from './lib/heap.js'
import { startIsorunProxy } from './lib/isorun-proxy.js'
import { freePort } from './lib/net.js'

const HELD = 50
const TOKEN = 'bench-holds-admin-token-0123456789'
const MiB = 1024 * 1024
const TOLERANCE = 2 * MiB

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '50' },
    json: { type: 'boolean', default: false },
  },
})
const rounds = Number(values.rounds)

function log(text: string): void {
  process.stderr.write(`${text}\n`)
}

interface Pending {
  readonly id: string
  readonly host: string
  readonly waiting: number
}

async function main(): Promise<void> {
  let upstreamConnections = 0
  const upstream = net.createServer((s) => {
    upstreamConnections++
    s.on('error', () => undefined)
    s.resume()
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()))
  const upstreamPort = (upstream.address() as net.AddressInfo).port
  const dir = await mkdtemp(join(tmpdir(), 'isorun-bench-holds-'))
  await writeFile(
    join(dir, 'held.yaml'),
    'name: held\ndescription: every name is held for an approval\nallow: []\nonUnknown: ask\napprovalTimeoutMs: 600000\n',
  )
  const names = Array.from({ length: HELD }, (_, i) => `n${i}.held.bench`)
  const inspectPort = await freePort()
  const proxy = await startIsorunProxy(
    [
      '--profile',
      'held',
      '--profiles-dir',
      dir,
      '--allow-private',
      'loopback',
      ...names.flatMap((n) => ['--resolve', `${n}=127.0.0.1`]),
    ],
    { nodeFlags: [inspectFlag(inspectPort)], adminToken: TOKEN },
  )
  const admin = `http://127.0.0.1:${proxy.adminPort as number}`
  const auth = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }

  /** Long-polls until `n` approvals have a connection waiting. */
  async function waitingFor(n: number): Promise<Pending[]> {
    let after = -1
    for (;;) {
      const res = await fetch(`${admin}/approvals?after=${after}&wait=10000`, { headers: auth })
      const body = (await res.json()) as { version: number; pending: Pending[] }
      const waiting = body.pending.filter((p) => p.waiting > 0)
      if (waiting.length >= n) return waiting
      after = body.version
    }
  }

  /** One round: 50 held CONNECTs; heap while held; answered; closed; heap after. */
  async function round(): Promise<{
    heldHeap: number
    afterHeap: number
    upstreamWhileHeld: number
  }> {
    const before = upstreamConnections
    const clients = await Promise.all(
      names.map(
        (n) =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(proxy.port, '127.0.0.1', () => {
              s.write(`CONNECT ${n}:${upstreamPort} HTTP/1.1\r\nHost: ${n}:${upstreamPort}\r\n\r\n`)
              resolve(s)
            })
            s.on('error', reject)
          }),
      ),
    )
    const answered = clients.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.once('data', () => resolve())
          s.once('close', () => resolve())
        }),
    )
    const pending = await waitingFor(HELD)
    const upstreamWhileHeld = upstreamConnections - before
    const heldHeap = await heapAfterGc(inspectPort)
    await Promise.all(
      pending.map((p, i) =>
        fetch(`${admin}/approvals/${p.id}`, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({ answer: i % 2 ? 'deny' : 'once', by: 'bench' }),
        }).then((r) => r.text()),
      ),
    )
    await Promise.all(answered)
    await Promise.all(
      clients.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.destroyed) return resolve()
            s.once('close', () => resolve())
            s.destroy()
          }),
      ),
    )
    await waitingFor(0)
    const afterHeap = await heapAfterGc(inspectPort)
    return { heldHeap, afterHeap, upstreamWhileHeld }
  }

  try {
    log(`${values.warmup} warm-up rounds…`)
    for (let r = 0; r < Number(values.warmup); r++) await round()
    const baseline = await heapAfterGc(inspectPort)
    const results = []
    for (let r = 1; r <= rounds; r++) {
      const result = await round()
      results.push(result)
      log(
        `round ${r}: live heap with ${HELD} held ${(result.heldHeap / MiB).toFixed(2)} MiB, after answering ${(result.afterHeap / MiB).toFixed(2)} MiB (baseline ${(baseline / MiB).toFixed(2)} MiB); upstream connections while held: ${result.upstreamWhileHeld}`,
      )
    }
    const last = results[results.length - 1]
    const heldCost = Math.max(...results.map((r) => r.heldHeap)) - baseline
    const flat = results.every((r) => r.afterHeap <= baseline + TOLERANCE)
    const noDial = results.every((r) => r.upstreamWhileHeld === 0)
    const report = {
      held: HELD,
      rounds,
      baselineHeapBytes: baseline,
      heldHeapBytes: results.map((r) => r.heldHeap),
      afterHeapBytes: results.map((r) => r.afterHeap),
      perHeldConnectionBytes: Math.round(heldCost / HELD),
      flat,
      noDialWhileHeld: noDial,
    }
    if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`)
    else {
      log(
        `per held connection: ${(heldCost / HELD / 1024).toFixed(1)} KiB of live heap; after ${rounds} rounds: ${((last?.afterHeap ?? 0) / MiB).toFixed(2)} MiB vs baseline ${(baseline / MiB).toFixed(2)} MiB`,
      )
      log(
        `${flat ? 'PASS' : 'FAIL'} heap back to baseline (+${TOLERANCE / MiB} MiB) after every round`,
      )
      log(`${noDial ? 'PASS' : 'FAIL'} no upstream connection while held`)
    }
    if (!flat || !noDial) process.exitCode = 1
  } finally {
    await proxy.stop()
    upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
