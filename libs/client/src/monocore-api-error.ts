/** One problem of a validation error: the field and what is wrong with it. */
export interface ApiIssue {
  path: string;
  message: string;
}

/**
 * Every failure of a call to the monocore API. `code` is the API's stable
 * error code (docs/ERRORS.md: `MC_SANDBOX_NOT_FOUND`, `MC_API_BAD_REQUEST`, …),
 * `status` the HTTP status it came with (0 when no answer came at all:
 * `MC_API_UNREACHABLE`), `details` the API's structured context and `issues`
 * one entry per invalid field.
 *
 * Failures that happen after an answer started (the last line of a streamed
 * exec, the `error` message of a WebSocket session) carry the same codes, with
 * the status the API maps that code to when it is known, else 0.
 */
export class MonocoreApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown>;
  readonly issues: ApiIssue[];

  constructor(
    code: string,
    message: string,
    init: { status?: number; details?: Record<string, unknown>; issues?: ApiIssue[]; cause?: unknown } = {},
  ) {
    super(message, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = 'MonocoreApiError';
    this.code = code;
    this.status = init.status ?? 0;
    this.details = init.details ?? {};
    this.issues = init.issues ?? [];
  }

  toJSON(): { code: string; status: number; message: string; details: Record<string, unknown>; issues?: ApiIssue[] } {
    return { code: this.code, status: this.status, message: this.message, details: this.details, ...(this.issues.length > 0 ? { issues: this.issues } : {}) };
  }
}

/** True for a MonocoreApiError, optionally with this code. */
export function isMonocoreApiError(err: unknown, code?: string): err is MonocoreApiError {
  return err instanceof MonocoreApiError && (code === undefined || err.code === code);
}
