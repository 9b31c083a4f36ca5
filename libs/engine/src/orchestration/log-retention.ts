import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Writable } from 'node:stream';

/**
 * How long and how much of a service's output is kept on its host (the
 * seed's `LogRetentionPolicy::with_max_age_weeks(1)`): files rotate when they
 * reach `maxBytes`; at most `maxFiles` rotated files are kept, none older
 * than `maxAgeMs`.
 */
export interface LogRetentionPolicy {
  maxBytes: number;
  maxFiles: number;
  maxAgeMs: number;
}

const WEEK_MS = 7 * 24 * 3600 * 1000;

export const LogRetention = {
  default: (): LogRetentionPolicy => ({ maxBytes: 10 * 1024 * 1024, maxFiles: 5, maxAgeMs: WEEK_MS }),
  withMaxAgeWeeks: (weeks: number, base: Partial<LogRetentionPolicy> = {}): LogRetentionPolicy => ({
    ...LogRetention.default(),
    ...base,
    maxAgeMs: weeks * WEEK_MS,
  }),
} as const;

export interface RotatingLogWriterOptions {
  /** The live file, e.g. <home>/log/web.stdout.log; rotated files are <path>.1 (newest) … <path>.N. */
  path: string;
  policy?: LogRetentionPolicy;
  /** Called with every complete line (without its newline), e.g. to tee into Redis. */
  onLine?: (line: string) => void;
  /** Longest line passed to onLine (longer lines are cut; the file keeps them whole). */
  maxLineBytes?: number;
}

/**
 * A Writable for a service's stdout or stderr (passed as VmSpec.stdout/stderr):
 * appends to a file, rotates by size, prunes by count and age. Writes are
 * synchronous appends so a crash loses nothing already written.
 */
export class RotatingLogWriter extends Writable {
  readonly path: string;
  readonly policy: LogRetentionPolicy;
  #fd: number;
  #size: number;
  #partial = '';
  readonly #onLine: ((line: string) => void) | undefined;
  readonly #maxLine: number;

  constructor(options: RotatingLogWriterOptions) {
    super({ decodeStrings: true });
    this.path = options.path;
    this.policy = options.policy ?? LogRetention.default();
    this.#onLine = options.onLine;
    this.#maxLine = options.maxLineBytes ?? 16 * 1024;
    mkdirSync(dirname(this.path), { recursive: true });
    this.#fd = openSync(this.path, 'a', 0o640);
    this.#size = fstatSync(this.#fd).size;
    this.prune();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.append(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#partial.length > 0) {
      this.#onLine?.(this.#partial);
      this.#partial = '';
    }
    try {
      closeSync(this.#fd);
    } catch {
      // already closed
    }
    cb();
  }

  /** Synchronous append (also usable without the stream API). */
  append(chunk: Buffer | string): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.#size > 0 && this.#size + buf.length > this.policy.maxBytes) this.rotate();
    writeSync(this.#fd, buf);
    this.#size += buf.length;
    if (this.#onLine) {
      const text = this.#partial + buf.toString('utf8');
      const lines = text.split('\n');
      this.#partial = lines.pop() ?? '';
      for (const l of lines) this.#onLine(l.length > this.#maxLine ? l.slice(0, this.#maxLine) : l);
      if (this.#partial.length > this.#maxLine) {
        this.#onLine(this.#partial.slice(0, this.#maxLine));
        this.#partial = '';
      }
    }
  }

  /** Shift <path>.k → <path>.k+1, <path> → <path>.1, start a new file, prune. */
  rotate(): void {
    closeSync(this.#fd);
    for (let k = this.policy.maxFiles - 1; k >= 1; k--) {
      try {
        renameSync(`${this.path}.${k}`, `${this.path}.${k + 1}`);
      } catch {
        // gap in the sequence
      }
    }
    if (this.policy.maxFiles >= 1) renameSync(this.path, `${this.path}.1`);
    else unlinkSync(this.path);
    this.#fd = openSync(this.path, 'a', 0o640);
    this.#size = 0;
    this.prune();
  }

  /** Delete rotated files beyond maxFiles or older than maxAge. */
  prune(now = Date.now()): string[] {
    const removed: string[] = [];
    const dir = dirname(this.path);
    const base = basename(this.path);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return removed;
    }
    for (const name of names) {
      const m = name.startsWith(`${base}.`) ? /^(\d+)$/.exec(name.slice(base.length + 1)) : null;
      if (!m) continue;
      const file = join(dir, name);
      const k = Number(m[1]);
      let old = false;
      try {
        old = now - statSync(file).mtimeMs > this.policy.maxAgeMs;
      } catch {
        continue;
      }
      if (k > this.policy.maxFiles || old) {
        try {
          unlinkSync(file);
          removed.push(file);
        } catch {
          // raced with another prune
        }
      }
    }
    return removed;
  }
}
