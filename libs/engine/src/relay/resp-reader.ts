import { bufferFor } from '../streams/slabs.js';

/** A reply as read: bulk strings are Buffers, simple strings strings, integers numbers, nil null. */
export type RespValue = Buffer | string | number | null | RespError | SkippedBulk | RespValue[];

/** An error reply (`-ERR …`): a value, not a failure of the reader. */
export class RespError extends Error {}

/** A bulk string over the reader's size limit: its bytes were read and dropped. */
export class SkippedBulk {
  constructor(readonly length: number) {}
}

/** The bytes are not RESP (or break a limit that cannot be skipped): the connection cannot be trusted any more. */
export class RespProtocolError extends Error {}

export interface RespLimits {
  /** Longer bulk strings are skipped (read, dropped, replaced by a SkippedBulk). */
  maxBulk: number;
  /** Longer arrays fail the reply. */
  maxArray: number;
  /** Deeper nesting fails the reply. */
  maxDepth: number;
}

const CR = 13;
const LF = 10;
/** The reader's own buffer: every header and every short value goes through it; a header or simple line must fit. */
const SCRATCH_BYTES = 64 << 10;

interface ArrayFrame {
  items: RespValue[];
  left: number;
}

/**
 * An incremental reader of RESP2 replies that decides where the socket's bytes land: a large
 * bulk string (a relay entry's data) is read straight into its own buffer — a slab, reused once
 * its consumer is done — and everything else into one scratch buffer of the reader's. So a
 * 1 MiB field costs no copy and no fresh memory; a general parser (ioredis's redis-parser)
 * gathers the socket's fresh 64 KiB reads and copies them into a pool it regrows.
 *
 * Two ways to drive it: `target()` is the buffer the next socket read should fill and `wrote(n)`
 * says how much it did (a net.Socket's `onread`); `feed(chunk)` copies a chunk in through the
 * same steps (a TLS socket, tests). Complete replies go to `onReply` in order. Every length comes
 * from the peer and is checked: a malformed reply throws RespProtocolError (the caller drops the
 * connection), an oversized bulk string is skipped.
 */
export class RespReader {
  readonly #limits: RespLimits;
  readonly #onReply: (value: RespValue) => void;
  readonly #scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  /** Bytes of `#scratch` read and not yet parsed (from 0). */
  #have = 0;
  /** The bulk string being read straight into its buffer, and how much of it is there. */
  #bulk?: Buffer;
  #filled = 0;
  /** Bytes of an oversized bulk string (and its CRLF) still to drop. */
  #skip = 0;
  #skipped?: SkippedBulk;
  /** A bulk string read whole, waiting for its CRLF. */
  #done?: Buffer;
  /** After a bulk string's bytes: its CRLF is due. */
  #crlf = false;
  readonly #stack: ArrayFrame[] = [];
  #failed?: RespProtocolError;

  constructor(limits: RespLimits, onReply: (value: RespValue) => void) {
    this.#limits = limits;
    this.#onReply = onReply;
  }

  /** Where the next bytes from the socket go: the rest of the bulk string being read, else the free part of the scratch buffer. */
  target(): Buffer {
    if (this.#bulk) return this.#bulk.subarray(this.#filled);
    return this.#scratch.subarray(this.#have);
  }

  /** The last `target()` received `n` bytes. Throws RespProtocolError (and keeps throwing) once the bytes are not RESP. */
  wrote(n: number): void {
    if (this.#failed) throw this.#failed;
    try {
      if (this.#bulk) {
        this.#filled += n;
        if (this.#filled === this.#bulk.length) this.#endBulk(this.#bulk);
        return;
      }
      this.#have += n;
      this.#parse();
    } catch (err) {
      this.#failed = err instanceof RespProtocolError ? err : new RespProtocolError((err as Error).message);
      throw this.#failed;
    }
  }

  /** Bytes that arrived in a buffer of their own: copied through `target()`. */
  feed(chunk: Uint8Array): void {
    for (let off = 0; off < chunk.length; ) {
      const t = this.target();
      if (t.length === 0) throw (this.#failed ??= new RespProtocolError('a header line is longer than the reader takes'));
      const n = Math.min(t.length, chunk.length - off);
      t.set(chunk.subarray(off, off + n));
      off += n;
      this.wrote(n);
    }
  }

  /** Parses what the scratch buffer holds, then keeps the unparsed rest at its start. */
  #parse(): void {
    const s = this.#scratch;
    let pos = 0;
    for (;;) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, this.#have - pos);
        pos += n;
        this.#skip -= n;
        if (this.#skip > 0) break;
        this.#value(this.#skipped!);
        continue;
      }
      if (this.#crlf) {
        if (this.#have - pos < 2) break;
        if (s[pos] !== CR || s[pos + 1] !== LF) throw new RespProtocolError('a bulk string does not end with CRLF');
        pos += 2;
        this.#crlf = false;
        this.#value(this.#done!);
        this.#done = undefined;
        continue;
      }
      const eol = s.indexOf(LF, pos);
      if (eol < 0 || eol >= this.#have) {
        if (this.#have - pos >= SCRATCH_BYTES) throw new RespProtocolError(`a line of more than ${SCRATCH_BYTES} bytes`);
        break;
      }
      if (eol === pos || s[eol - 1] !== CR) throw new RespProtocolError('a line does not end with CRLF');
      const type = s[pos];
      const line = s.toString('latin1', pos + 1, eol - 1);
      pos = eol + 1;
      switch (type) {
        case 0x2b: // +
          this.#value(line);
          break;
        case 0x2d: // -
          this.#value(new RespError(line));
          break;
        case 0x3a: // :
          this.#value(this.#int(line, Number.MIN_SAFE_INTEGER));
          break;
        case 0x2a: {
          // *
          const n = this.#int(line, -1);
          if (n === -1) this.#value(null);
          else if (n > this.#limits.maxArray) throw new RespProtocolError(`an array of ${n} elements (at most ${this.#limits.maxArray})`);
          else if (n === 0) this.#value([]);
          else if (this.#stack.length >= this.#limits.maxDepth) throw new RespProtocolError(`arrays nested deeper than ${this.#limits.maxDepth}`);
          else this.#stack.push({ items: [], left: n });
          break;
        }
        case 0x24: {
          // $
          const len = this.#int(line, -1);
          if (len === -1) {
            this.#value(null);
            break;
          }
          if (len > this.#limits.maxBulk) {
            this.#skip = len + 2;
            this.#skipped = new SkippedBulk(len);
            break;
          }
          // Large ones into a slab (streams/slabs.ts), shorter ones into a buffer of their size.
          const bulk = bufferFor(len);
          const n = Math.min(len, this.#have - pos);
          s.copy(bulk, 0, pos, pos + n);
          pos += n;
          if (n === len) {
            this.#done = bulk;
            this.#crlf = true;
          } else {
            // The rest goes straight from the socket into the bulk string's buffer.
            this.#bulk = bulk;
            this.#filled = n;
            this.#have = 0;
            return;
          }
          break;
        }
        default:
          throw new RespProtocolError(`a reply starts with byte 0x${(type ?? 0).toString(16)}`);
      }
    }
    s.copyWithin(0, pos, this.#have);
    this.#have -= pos;
  }

  #endBulk(bulk: Buffer): void {
    this.#bulk = undefined;
    this.#filled = 0;
    this.#done = bulk;
    this.#crlf = true;
  }

  #int(line: string, min: number): number {
    if (!/^-?\d{1,16}$/.test(line)) throw new RespProtocolError(`${JSON.stringify(line.slice(0, 30))} is not a length or an integer`);
    const n = Number(line);
    if (n < min) throw new RespProtocolError(`${n} is not a valid length`);
    return n;
  }

  /** A complete value: into the array being read, or out as a reply. */
  #value(v: RespValue): void {
    for (;;) {
      const top = this.#stack[this.#stack.length - 1];
      if (!top) {
        this.#onReply(v);
        return;
      }
      top.items.push(v);
      if (--top.left > 0) return;
      this.#stack.pop();
      v = top.items;
    }
  }
}
