import { Readable, Writable } from 'node:stream';
import { MAX_PAYLOAD } from './agent-frame.js';

/**
 * A guest→host byte stream (exec stdout/stderr, file data) with a window:
 * what the guest has sent but the consumer has not taken yet (queued here or
 * still in flight) never exceeds `window`. Chunks wait in our own queue and
 * move into the Readable only when it asks (`_read`): that moment is what
 * consumption means, and it is when credit goes back, in steps of a quarter
 * window (or whatever is left when the queue runs dry) so CREDIT frames stay
 * few. The Readable's own buffer adds at most its 64 KiB high-water mark.
 */
export class GuestReadable extends Readable {
  private granted: number;
  private received = 0;
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private ungranted = 0;
  private wanting = false;
  private ending = false;

  constructor(
    private readonly window: number,
    private readonly sendCredit: (bytes: number) => void,
  ) {
    super({ highWaterMark: MAX_PAYLOAD });
    this.granted = window;
  }

  /** Bytes the guest may still send. */
  get credit(): number {
    return this.granted - this.received;
  }

  /** Bytes received but not yet taken by the consumer (queued in this object). */
  get held(): number {
    return this.queued;
  }

  /** Accepts a DATA payload; false when it exceeds the guest's credit (a protocol violation). */
  accept(data: Buffer): boolean {
    if (data.length > this.credit) return false;
    this.received += data.length;
    if (this.destroyed) return true;
    this.queue.push(data);
    this.queued += data.length;
    if (this.wanting) this.drain();
    return true;
  }

  /** No more data will come (after what is queued). */
  finish(): void {
    this.ending = true;
    if (this.wanting) this.drain();
  }

  override _read(): void {
    this.wanting = true;
    this.drain();
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const chunk = this.queue.shift()!;
      this.queued -= chunk.length;
      this.ungranted += chunk.length;
      const more = this.push(chunk);
      if (!more) {
        this.wanting = false;
        break;
      }
    }
    if (this.ungranted > 0 && (this.ungranted >= Math.min(this.window / 4, MAX_PAYLOAD) || this.queued === 0) && !this.ending) {
      this.granted += this.ungranted;
      this.sendCredit(this.ungranted);
      this.ungranted = 0;
    }
    if (this.ending && this.queue.length === 0 && this.wanting) {
      this.wanting = false;
      this.push(null);
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
