import { Readable, Writable } from 'node:stream';
import { MAX_PAYLOAD } from './agent-frame.js';

/**
 * A guest→host byte stream (exec stdout/stderr, file data) with a window:
 * the guest may send at most `window` bytes that the consumer has not read
 * yet, so this stream (in flight + buffered) never holds more than that.
 * Credit goes back as the consumer reads (`_read`), in steps of a quarter
 * window so CREDIT frames stay few.
 */
export class GuestReadable extends Readable {
  private granted: number;
  private received = 0;

  constructor(
    private readonly window: number,
    private readonly sendCredit: (bytes: number) => void,
  ) {
    super({ highWaterMark: window });
    this.granted = window;
  }

  /** Bytes the guest may still send. */
  get credit(): number {
    return this.granted - this.received;
  }

  /** Accepts a DATA payload; false when it exceeds the guest's credit (a protocol violation). */
  accept(data: Buffer): boolean {
    if (data.length > this.credit) return false;
    this.received += data.length;
    if (!this.destroyed) this.push(data);
    return true;
  }

  override _read(): void {
    const room = this.window - this.credit - this.readableLength;
    if (room >= Math.min(this.window / 4, MAX_PAYLOAD) && !this.destroyed) {
      this.granted += room;
      this.sendCredit(room);
    }
  }
}

/**
 * Sends a host→guest byte stream (exec stdin, file data) as DATA frames of at
 * most 64 KiB while the guest has granted credit, and waits for CREDIT
 * otherwise; `send` itself waits for the socket to drain when its buffer is
 * high. So a guest that stops reading stops the sender instead of growing the
 * host's memory.
 */
export class CreditSender {
  private credit = 0;
  private waiting?: () => void;
  private failed?: Error;

  constructor(private readonly send: (data: Buffer) => Promise<void>) {}

  addCredit(bytes: number): void {
    this.credit += bytes;
    this.wake();
  }

  /** The channel ended: pending and later writes fail with err. */
  fail(err: Error): void {
    this.failed ??= err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (this.failed) throw this.failed;
      if (this.credit <= 0) {
        await new Promise<void>((resolve) => (this.waiting = resolve));
        continue;
      }
      const n = Math.min(chunk.length - off, this.credit, MAX_PAYLOAD);
      this.credit -= n;
      await this.send(chunk.subarray(off, off + n));
      off += n;
    }
  }
}

/** A Writable over a CreditSender (exec stdin); end() sends EOF. */
export class GuestWritable extends Writable {
  constructor(
    private readonly sender: CreditSender,
    private readonly sendEof: () => void,
  ) {
    super({ highWaterMark: MAX_PAYLOAD });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sender.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)).then(() => cb(), (err: Error) => cb(err));
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.sendEof();
    cb();
  }
}
