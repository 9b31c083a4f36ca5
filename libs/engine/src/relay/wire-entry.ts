import { Command } from 'ioredis';
import { RELAY_MAX_CHUNK_BYTES } from './relay-protocol.js';

/** Room kept before the data for the `$<length>\r\n` of the data field (7 digits cover 1 MiB). */
const LENGTH_HEADER_ROOM = 16;
/** Room before the data in a reused buffer: the command up to the data (inbox keys are at most 200 bytes). */
const SPARE_HEAD = 512;
/** Buffers kept for reuse, per process (each SPARE_HEAD + RELAY_MAX_CHUNK_BYTES + 2 bytes). */
const MAX_SPARE = 8;
const spare: Buffer[] = [];

/**
 * One `d` entry (`XADD <inbox> NOMKSTREAM * k <kind> c <call> d <bytes>`) built directly in the
 * form it goes to Redis in, so that an upload's bytes are copied once in the API — from the
 * HTTP chunks into this buffer — instead of twice (gathered into a piece, then copied again by
 * ioredis into its own command buffer, which doubled the API's allocations and its garbage
 * collections; bench/RESULTS.md "sandboxes"). The bytes are appended as they come; `command()`
 * writes the RESP header in front of them and hands ioredis the finished buffer.
 */
export class WireEntry {
  readonly #buf: Buffer;
  /** The buffer may go back to `spare` once Redis answered the entry. */
  readonly #reusable: boolean;
  /** The command up to the data field's value (its `$<length>` excluded). */
  readonly #prefix: Buffer;
  /** Where the data starts. */
  readonly #at: number;
  #length = 0;

  constructor(
    readonly key: string,
    kind: string,
    call: string,
    readonly capacity: number,
  ) {
    const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
    const args = ['xadd', key, 'NOMKSTREAM', '*', 'k', kind, 'c', call, 'd'];
    // The data is the last argument.
    this.#prefix = Buffer.from(`*${args.length + 1}\r\n${args.map(bulk).join('')}`);
    // Entries of the usual size reuse the buffers of entries Redis already answered: a fresh
    // 1 MiB buffer per entry made V8 run a full garbage collection every 64 MiB moved.
    this.#reusable = capacity === RELAY_MAX_CHUNK_BYTES && this.#prefix.length + LENGTH_HEADER_ROOM <= SPARE_HEAD;
    this.#at = this.#reusable ? SPARE_HEAD : this.#prefix.length + LENGTH_HEADER_ROOM;
    this.#buf = (this.#reusable ? spare.pop() : undefined) ?? Buffer.allocUnsafe(this.#at + capacity + 2);
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
    this.#buf.set(chunk.subarray(offset, offset + n), this.#at + this.#length);
    this.#length += n;
    return n;
  }

  /** The XADD (its reply: the entry id, or null when the inbox is gone). The entry must not be appended to afterwards. */
  command(): Command {
    const head = Buffer.from(`$${this.#length}\r\n`);
    const start = this.#at - head.length - this.#prefix.length;
    this.#prefix.copy(this.#buf, start);
    head.copy(this.#buf, this.#at - head.length);
    this.#buf.write('\r\n', this.#at + this.#length, 'latin1');
    return new WireCommand(this.#buf.subarray(start, this.#at + this.#length + 2), this.key);
  }

  /**
   * Redis answered this entry's command, so it read every byte of it and the socket holds the
   * buffer no more: it may serve another entry. Not after an error (the command may still be
   * queued for a reconnection), and never twice.
   */
  recycle(): void {
    if (this.#reusable && spare.length < MAX_SPARE && !spare.includes(this.#buf)) spare.push(this.#buf);
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
