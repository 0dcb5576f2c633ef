// Errors the CLI turns into a one-line message and an exit code, never a stack trace.

/** Bad arguments, an unknown profile or a broken profile file: exit 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message)
  }
}

/** A failure the user should read about, with its exit code (default 1). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message)
  }
}
