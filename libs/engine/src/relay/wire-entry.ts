import { Command } from 'ioredis';
import { SLAB_DATA_BYTES, SLAB_HEAD, isSlab, releaseSlab, takeSlab } from '../streams/slabs.js';

/** Room kept before the data for the `$<length>\r\n` of the data field (7 digits cover 1 MiB). */
const LENGTH_HEADER_ROOM = 16;

/**
 * One data entry (`XADD <inbox> NOMKSTREAM * k <kind> c <call> d <bytes>`) built directly in the
 * form it goes to Redis in, around its bytes in a slab (streams/slabs.ts): the command up to the
 * data field is written into the room before the data, the closing CRLF after it. So an upload's
 * bytes are copied once in the API (from the HTTP chunks into the slab), and a file's bytes not
 * at all in the worker (the lane slot is read into a slab, and that slab is sent). ioredis would
 * copy them once more into a fresh command buffer of its own. The slab serves again once Redis
 * answered the entry.
 */
export class WireEntry {
  /** The data, in the data area of a slab (or, for a key too long for a slab's head, a buffer of its own). */
  readonly #data: Buffer;
  /** The command up to the data field's value (its `$<length>` excluded). */
  readonly #prefix: Buffer;
  #length: number;

  /** An entry to append up to `capacity` bytes to. */
  constructor(
    readonly key: string,
    readonly kind: string,
    readonly call: string,
    readonly capacity: number = SLAB_DATA_BYTES,
    data?: Buffer,
  ) {
    const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
    const args = ['xadd', key, 'NOMKSTREAM', '*', 'k', kind, 'c', call, 'd'];
    // The data is the last argument.
    this.#prefix = Buffer.from(`*${args.length + 1}\r\n${args.map(bulk).join('')}`);
    const fits = this.#prefix.length + LENGTH_HEADER_ROOM <= SLAB_HEAD && capacity <= SLAB_DATA_BYTES;
    if (data && fits && isSlab(data)) {
      this.#data = data;
      this.#length = data.length;
    } else {
      this.#data = fits ? takeSlab(capacity) : Buffer.allocUnsafe(capacity);
      this.#length = 0;
      if (data) this.append(data);
    }
  }

  /** An entry of exactly these bytes: a slab's data area is used as it is (and is the entry's from now on), other bytes are copied. */
  static of(key: string, kind: string, call: string, data: Buffer): WireEntry {
    return new WireEntry(key, kind, call, data.length, data);
  }

  get length(): number {
    return this.#length;
  }

  get room(): number {
    return this.capacity - this.#length;
  }

  /** Copies as much of `chunk` from `offset` as fits; returns how much it took. */
  append(chunk: Uint8Array, offset = 0): number {
    const n = Math.min(this.room, chunk.byteLength - offset);
    this.#data.set(chunk.subarray(offset, offset + n), this.#length);
    this.#length += n;
    return n;
  }

  /** The XADD (its reply: the entry id, or null when the inbox is gone). The entry must not be appended to afterwards. */
  command(): Command {
    const head = Buffer.from(`$${this.#length}\r\n`);
    const data = this.#data.subarray(0, this.#length);
    if (!isSlab(this.#data)) return new WireCommand(Buffer.concat([this.#prefix, head, data, Buffer.from('\r\n')]), this.key);
    // The slab's memory around its data area is free: the command is written there, in place.
    const mem = Buffer.from(this.#data.buffer, 0, SLAB_HEAD + this.#length + 2);
    const start = SLAB_HEAD - head.length - this.#prefix.length;
    this.#prefix.copy(mem, start);
    head.copy(mem, SLAB_HEAD - head.length);
    mem.write('\r\n', SLAB_HEAD + this.#length, 'latin1');
    return new WireCommand(mem.subarray(start), this.key);
  }

  /**
   * The entry's bytes, for a reader in this process (append-entry.ts) instead of a command: the
   * slab is the reader's from now on, as a slab read from Redis would be. Not with `command()`.
   */
  take(): Buffer {
    return this.#data.subarray(0, this.#length);
  }

  /**
   * Redis answered this entry's command, so it read every byte of it and the socket holds the
   * slab no more: it may serve another entry. Not after an error (the command may still be
   * queued for a reconnection), and never twice.
   */
  recycle(): void {
    releaseSlab(this.#data);
  }
}

/** A command whose wire form is already built (ioredis writes it as it is; its own Lua script commands override toWritable the same way). */
class WireCommand extends Command {
  readonly #wire: Buffer;

  constructor(wire: Buffer, key: string) {
    super('xadd', [key], { replyEncoding: 'utf8' });
    this.#wire = wire;
  }

  override toWritable(): Buffer {
    return this.#wire;
  }
}
