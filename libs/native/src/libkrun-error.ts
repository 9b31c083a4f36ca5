/**
 * Codes of the libkrun binding. They are the same strings as the engine's
 * MC_VM_LIBKRUN_* codes (libs/engine/src/errors/codes.ts, docs/ERRORS.md): this
 * package sits below the engine and cannot import MonocoreError, so the engine
 * rewraps a LibkrunError into a MonocoreError with the same code and details.
 */
export type LibkrunErrorCode =
  | 'MC_VM_LIBKRUN_NOT_FOUND'
  | 'MC_VM_LIBKRUN_SYMBOL_MISSING'
  | 'MC_VM_LIBKRUN_CALL_FAILED'
  | 'MC_VM_LIBKRUN_INVALID_ARGUMENT'
  | 'MC_VM_LIBKRUN_SETUP_FAILED';

export class LibkrunError extends Error {
  readonly code: LibkrunErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: LibkrunErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LibkrunError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: LibkrunErrorCode; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}
