/** Exit codes every command shares (documented in the README). */
export const ExitCode = {
  Ok: 0,
  /** The command ran and the answer is "no": invalid config, failed service, … */
  Failure: 1,
  /** Bad usage: unknown flag, missing file, malformed argument. */
  Usage: 2,
  /** The command exists but is not implemented in this build. */
  NotImplemented: 3,
  /**
   * `monocore exec` could not run the command or lost it (API error, unknown or
   * stopped target, connection cut): 125, as `docker exec`, so it is never taken
   * for the command's own exit code (126 and 127 come from the guest: not
   * executable, not found).
   */
  ExecFailed: 125,
  /** A bug: an unexpected exception. */
  Internal: 70,
} as const;
