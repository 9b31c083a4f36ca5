/**
 * Reused 1 MiB buffers for bulk bytes (a file moving through the relay: docs/RELAY.md
 * "Reading an inbox, and where the bytes live").
 * Every fresh 1 MiB Buffer is memory V8 counts against its external-memory limit, and crossing
 * it forces a full garbage collection: with a few fresh buffers per MiB moved, the worker ran a
 * mark-compact every ~10 MiB (20-60 ms each, plus as much in incremental steps). A slab serves
 * one piece of data after another instead: a lane slot read out of the guest, a relay entry read
 * from Redis, the same bytes written to Redis as an XADD.
 *
 * A slab's data area starts SLAB_HEAD bytes into it, and 2 bytes stay free after the largest
 * data: an XADD's command up to its data field, and the CRLF after it, can be written around
 * the data in place (wire-entry.ts), so bytes read into a slab go to Redis without a copy.
 *
 * Ownership is by hand: whoever holds a slab's view gives it back with `releaseSlab` once
 * nothing reads or writes it any more (a socket write that was answered, a file write that
 * returned). A view that is never given back is simply garbage collected: forgetting costs only
 * the allocation, while giving back too early would hand bytes still in use to someone else.
 */

/** Bytes of data a slab holds: a relay entry's data field, a lane slot. */
export const SLAB_DATA_BYTES = 1 << 20;
/** Room before the data: an XADD's command up to its data field (inbox keys are at most 200 bytes). */
export const SLAB_HEAD = 512;
/** Room after the data: the CRLF that ends the data field. */
export const SLAB_TAIL = 2;
/** Slabs kept for reuse per process: a few entries in flight each way, plus a window queued. */
const MAX_SPARE = 16;

const spare: ArrayBuffer[] = [];
/** The memory of every slab this process made (a view's `.buffer`), and the length of the data area last given out. */
const ours = new WeakMap<ArrayBufferLike, number>();

/** A slab's data area of `length` bytes (≤ SLAB_DATA_BYTES), reused when one was given back. */
export function takeSlab(length: number = SLAB_DATA_BYTES): Buffer {
  if (length > SLAB_DATA_BYTES || length < 0) throw new RangeError(`a slab holds at most ${SLAB_DATA_BYTES} bytes, not ${length}`);
  let mem = spare.pop();
  if (!mem) {
    // allocUnsafe above its pool size gives a Buffer of its own memory, starting at offset 0.
    const b = Buffer.allocUnsafe(SLAB_HEAD + SLAB_DATA_BYTES + SLAB_TAIL);
    mem = b.buffer as ArrayBuffer;
  }
  ours.set(mem, length);
  return Buffer.from(mem, SLAB_HEAD, length);
}

/**
 * Whether `buf` is the whole data area of a slab as `takeSlab` gave it, so the room around it is
 * free to write (a view of part of it is not: the rest may be someone else's bytes).
 */
export function isSlab(buf: Uint8Array): boolean {
  return buf.byteOffset === SLAB_HEAD && ours.get(buf.buffer) === buf.byteLength;
}

/** Gives a slab back for reuse: its holder no longer reads or writes it, and no one else holds it. */
export function releaseSlab(buf: Uint8Array): void {
  const mem = buf.buffer as ArrayBuffer;
  if (!isSlab(buf) || spare.length >= MAX_SPARE || spare.includes(mem)) return;
  spare.push(mem);
}

/** Data at least this long that is read or copied for a reader goes into a slab; shorter data into a buffer of its own size. */
export const SLAB_MIN_BYTES = 64 << 10;

/**
 * A buffer to read or copy `length` bytes into for a reader that may give it back with
 * `releaseSlab` when done: a slab for large data (a relay entry's bytes), else a fresh buffer.
 */
export function bufferFor(length: number): Buffer {
  return length >= SLAB_MIN_BYTES && length <= SLAB_DATA_BYTES ? takeSlab(length) : Buffer.allocUnsafe(length);
}

/** Slabs waiting to be reused (tests). */
export function spareSlabs(): number {
  return spare.length;
}
