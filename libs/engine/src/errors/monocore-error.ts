import { ErrorCodes, type ErrorCode } from './codes.js';

/**
 * The one error type the engine throws for expected failures. `code` is stable
 * (documented in docs/ERRORS.md); `message` names the offending input; `details`
 * carries structured context (the field path, the tar entry, the digest...).
 */
export class MonocoreError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MonocoreError';
    this.code = code;
    this.details = details;
  }

  /** HTTP status the API answers with for this error. */
  get httpStatus(): number {
    return ErrorCodes[this.code].status;
  }

  /** Whether a retry (BullMQ attempt) can possibly help. */
  get retryable(): boolean {
    return ErrorCodes[this.code].retryable;
  }

  toJSON(): { code: ErrorCode; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isMonocoreError(err: unknown, code?: ErrorCode): err is MonocoreError {
  return err instanceof MonocoreError && (code === undefined || err.code === code);
}
