// `import { Isorun } from 'isorun'`: the SDK. Nothing here may import server-side
// code; the package has no dependencies.
export { DEFAULT_URL, Isorun, Sandbox } from './client.js'
export type {
  CreateOptions,
  ExecOptions,
  IsorunOptions,
  OpenOptions,
  SpawnOptions,
} from './client.js'
export {
  IsorunApiError,
  IsorunConnectionError,
  IsorunError,
  IsorunFileError,
  IsorunUsageError,
} from './errors.js'
export type { FileErrorCode } from './errors.js'
export { SandboxFiles } from './files.js'
export type { FileData, TransferResult, WriteOptions } from './files.js'
export { SandboxProcess } from './process.js'
export { Approval } from './approvals.js'
export type { ApprovalHandler, ApprovalHandlerResult, ApprovalSubscription } from './approvals.js'
export type * from './types.js'
