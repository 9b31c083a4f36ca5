/**
 * Every stable error code, with the HTTP status the API maps it to and whether
 * retrying the failed job can help. docs/ERRORS.md documents each one; a test
 * (errors.test.ts) fails when a code is missing there.
 *
 * Each domain owns its own section; keep them sorted by domain prefix.
 */
interface CodeInfo {
  status: number;
  retryable: boolean;
  summary: string;
}

const code = (status: number, retryable: boolean, summary: string): CodeInfo => ({ status, retryable, summary });

export const ErrorCodes = {
  // --- generic ---------------------------------------------------------------
  MC_INTERNAL: code(500, true, 'an unexpected internal error'),
  MC_USAGE: code(400, false, 'a command-line usage error'),
  MC_NOT_IMPLEMENTED: code(501, false, 'the feature is not implemented yet'),

  // --- config (MC_CONFIG_*) ---------------------------------------------------
  MC_CONFIG_INVALID: code(400, false, 'the configuration has one or more problems (see details.issues)'),
  MC_CONFIG_FILE_NOT_FOUND: code(400, false, 'the configuration file does not exist or cannot be read'),

  // --- oci (MC_OCI_*) ---------------------------------------------------------

  // --- rootfs (MC_ROOTFS_*) ---------------------------------------------------

  // --- vm (MC_VM_*) -----------------------------------------------------------

  // --- orchestration and state (MC_ORCH_*, MC_STATE_*) -------------------------
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ErrorCodes;
