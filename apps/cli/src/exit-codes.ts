/** Exit codes every command shares (documented in the README). */
export const ExitCode = {
  Ok: 0,
  /** The command ran and the answer is "no": invalid config, failed service, … */
  Failure: 1,
  /** Bad usage: unknown flag, missing file, malformed argument. */
  Usage: 2,
  /** The command exists but is not implemented in this build. */
  NotImplemented: 3,
  /** A bug: an unexpected exception. */
  Internal: 70,
} as const;
