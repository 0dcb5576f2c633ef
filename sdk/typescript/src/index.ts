// `import { Isorun } from 'isorun'`: the SDK. Keep this entry point free of
// server-side imports; a test checks its import graph.
export {
  DEFAULT_URL,
  Isorun,
  IsorunApiError,
  IsorunConnectionError,
  IsorunError,
  IsorunUsageError,
  Sandbox,
} from './client.js'
export type { CreateOptions, ExecOptions, IsorunOptions } from './client.js'
export type * from './types.js'
