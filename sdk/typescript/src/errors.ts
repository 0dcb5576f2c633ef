// Every error the SDK throws is an IsorunError with a `code`: the runner's
// error code for API errors, or one of the SDK's own.

export class IsorunError extends Error {
  override readonly name: string = 'IsorunError'
  constructor(
    message: string,
    readonly code: string,
    /** HTTP status of the API response, when there was one. */
    readonly status?: number,
    readonly details?: unknown,
  ) {
    super(message)
  }
}

/** Arguments the SDK refuses before sending anything (e.g. both networkProfile and network). */
export class IsorunUsageError extends IsorunError {
  override readonly name: string = 'IsorunUsageError'
  constructor(message: string, code = 'invalid-argument') {
    super(message, code)
  }
}

/** The runner answered with an error. */
export class IsorunApiError extends IsorunError {
  override readonly name: string = 'IsorunApiError'
}

/** The runner could not be reached, did not answer in time, or a stream broke off. */
export class IsorunConnectionError extends IsorunError {
  override readonly name: string = 'IsorunConnectionError'
}

/** Codes of file errors, from the runner or from the SDK's own checks (`unsafe-name`). */
export type FileErrorCode =
  | 'not-found'
  | 'too-large'
  | 'is-a-directory'
  | 'not-a-directory'
  | 'not-a-file'
  | 'invalid-path'
  | 'permission-denied'
  | 'missing-tool'
  | 'unsafe-name'

const FILE_ERROR_CODES: ReadonlySet<string> = new Set<FileErrorCode>([
  'not-found',
  'too-large',
  'is-a-directory',
  'not-a-directory',
  'not-a-file',
  'invalid-path',
  'permission-denied',
  'missing-tool',
  'unsafe-name',
])

/** A file operation failed for a reason that concerns the file: `code` says which. */
export class IsorunFileError extends IsorunApiError {
  override readonly name: string = 'IsorunFileError'
  declare readonly code: FileErrorCode
  constructor(
    message: string,
    code: FileErrorCode,
    /** The path concerned (in the sandbox, or on this machine for uploads and downloads). */
    readonly path: string,
    status?: number,
  ) {
    super(message, code, status)
  }

  /** An API error of a file route as an IsorunFileError when it is about the file; others unchanged. */
  static from(err: unknown, path: string): unknown {
    if (err instanceof IsorunApiError && FILE_ERROR_CODES.has(err.code))
      return new IsorunFileError(err.message, err.code as FileErrorCode, path, err.status)
    return err
  }
}
