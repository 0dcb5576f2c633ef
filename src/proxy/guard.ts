// The one guard around the data path's asynchronous work. What escapes a
// tunnel or a request handler is a bug, not a decision, and never passes
// silently: it is logged as an operational event, counted in /metrics
// (isorun_data_path_errors_total), the exchange's decision line is still
// written if the connection had a target, and the connection is closed.

import type { ProxyContext } from './context.js'
import type { Exchange } from './exchange.js'

/**
 * Runs `work` for one connection or request. `exchange` is the one the work
 * fills in (or what finds it once known); `close` ends the connection.
 */
export function guard(
  ctx: ProxyContext,
  exchange: Exchange | (() => Exchange | undefined),
  close: () => void,
  work: Promise<void>,
): void {
  work.catch((err: unknown) => {
    const e = typeof exchange === 'function' ? exchange() : exchange
    const message = err instanceof Error ? err.message : String(err)
    ctx.log.metrics.countDataPathError()
    ctx.log.operational.error(
      {
        protocol: e?.protocol,
        client: e?.client,
        target: e?.target ? `${e.target.host}:${e.target.port}` : undefined,
        error: message,
        stack: err instanceof Error ? err.stack : undefined,
      },
      'data path error; the connection was closed',
    )
    e?.endWithError(`internal error: ${message}`)
    close()
  })
}
