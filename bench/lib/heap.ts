// The live JavaScript heap of another Node process, after a full garbage
// collection, through its inspector (started with --inspect=127.0.0.1:PORT):
// RSS says little about leaks (V8 and malloc keep freed pages), the heap that
// survives a collection does. Loopback only.

import { WebSocket } from 'undici'

/** Node flag that opens the inspector of a child process on a loopback port. */
export function inspectFlag(port: number): string {
  return `--inspect=127.0.0.1:${port}`
}

async function debuggerUrl(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/json/list`)
  const targets = (await res.json()) as { webSocketDebuggerUrl?: string }[]
  const url = targets[0]?.webSocketDebuggerUrl
  if (!url) throw new Error(`no inspector target on 127.0.0.1:${port}`)
  return url
}

/** Collects garbage in the process behind the inspector, then returns its used heap in bytes. */
export async function heapAfterGc(port: number): Promise<number> {
  const ws = new WebSocket(await debuggerUrl(port))
  const pending = new Map<number, (result: Record<string, unknown>) => void>()
  let nextId = 1
  ws.addEventListener('message', (event) => {
    const msg = JSON.parse(String(event.data)) as { id?: number; result?: Record<string, unknown> }
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result ?? {})
  })
  const call = (method: string): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const id = nextId++
      pending.set(id, resolve)
      ws.send(JSON.stringify({ id, method }))
    })
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve())
    ws.addEventListener('error', () => reject(new Error('cannot open the inspector session')))
  })
  try {
    await call('HeapProfiler.collectGarbage')
    await call('HeapProfiler.collectGarbage') // a second pass frees what the first one unlinked
    const usage = await call('Runtime.getHeapUsage')
    return Number(usage.usedSize)
  } finally {
    ws.close()
  }
}
