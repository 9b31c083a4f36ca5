import type { FileHandle } from 'node:fs/promises';
import { SLAB_DATA_BYTES, takeSlab } from '../../streams/slabs.js';

/**
 * The bulk lane (docs/AGENT.md "Bulk lane"): a small disk shared with the guest
 * (virtio-blk, serial `monocore-lane`; a plain file when the agent runs on the
 * host in tests), cut into slots. File data moves through slots instead of
 * DATA frames: the sender writes a slot and names it in a LANE frame, the
 * receiver copies it out and hands it back. Under TCG a virtio-serial port
 * moves 10–25 MB/s (a 4 KiB buffer per interrupt); a 1 MiB slot is one block
 * request that QEMU copies at host speed.
 *
 * The host owns the slots: it lends them to a transfer (an upload's slots are
 * filled here, a download's are granted to the guest to fill) and takes them
 * back when the guest returns them or the transfer ends. The guest can write
 * into any slot at any time; that can only corrupt its own files' data, and the
 * host reads only the slot and length it was told, within the file it made.
 */

/** Bytes per slot; the guest's agent uses the same (it reports it in HELLO_ACK). A slot's bytes fit a slab. */
export const LANE_SLOT_BYTES = SLAB_DATA_BYTES;
/** Most slots a lane has (the agent's limit too). */
export const LANE_MAX_SLOTS = 64;
/** Slots one transfer holds at once, so that a few bulk transfers share one lane. */
export const LANE_SLOTS_PER_TRANSFER = 4;
/** The lane file a VM gets: 16 slots (16 MiB, sparse until used). */
export const LANE_FILE_BYTES = 16 * LANE_SLOT_BYTES;

/** The slots of one session, and the host's handle on the lane file. */
export class LanePool {
  private readonly free: number[];
  private readonly waiters: Array<{ resolve: (slot: number) => void; reject: (err: Error) => void }> = [];
  private failed?: Error;

  private constructor(
    private readonly file: FileHandle,
    readonly slots: number,
  ) {
    this.free = Array.from({ length: slots }, (_, i) => i);
  }

  /**
   * The host side of a lane the guest reported as `slots` slots of `slotBytes`, over the host's
   * handle on the lane file (not closed here: the VM owns it, and a new session reuses it):
   * undefined when the geometry does not match the file (then the session moves files through
   * the port).
   */
  static async open(file: FileHandle, slots: number, slotBytes: number): Promise<LanePool | undefined> {
    if (slotBytes !== LANE_SLOT_BYTES || slots < 1) return undefined;
    const { size } = await file.stat();
    const usable = Math.min(slots, LANE_MAX_SLOTS, Math.floor(size / LANE_SLOT_BYTES));
    return usable < 1 ? undefined : new LanePool(file, usable);
  }

  get freeSlots(): number {
    return this.free.length;
  }

  /** A free slot, or undefined when all are lent out. */
  tryAcquire(): number | undefined {
    if (this.failed) throw this.failed;
    return this.free.shift();
  }

  /** A free slot, waiting for one when all are lent out. */
  acquire(): Promise<number> {
    const slot = this.tryAcquire();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  release(slot: number): void {
    if (this.failed) return;
    const w = this.waiters.shift();
    if (w) w.resolve(slot);
    else this.free.push(slot);
  }

  async write(slot: number, offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.file.write(data, done, data.length - done, slot * LANE_SLOT_BYTES + offset + done);
      done += bytesWritten;
    }
  }

  /** The slot's first `length` bytes, in a slab (streams/slabs.ts): the relay sends them to Redis from there without a copy. */
  async read(slot: number, length: number): Promise<Buffer> {
    const buf = takeSlab(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.file.read(buf, done, length - done, slot * LANE_SLOT_BYTES + done);
      if (bytesRead === 0) throw new Error(`lane slot ${slot} ends after ${done} of ${length} bytes`);
      done += bytesRead;
    }
    return buf;
  }

  /** The session ended: waiters fail (the file stays open: it is the VM's). */
  close(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

/**
 * An upload's sending side: fills slots with the data as it comes and names
 * each full slot (and the last, partial one) in a LANE frame; holds at most
 * LANE_SLOTS_PER_TRANSFER slots, so a guest that stops returning them stops
 * the upload instead of the lane.
 */
export class LaneWriter {
  private slot?: number;
  private filled = 0;
  private readonly inFlight = new Set<number>();
  private waiting?: () => void;
  private failed?: Error;

  constructor(
    private readonly pool: LanePool,
    private readonly sendLane: (slot: number, length: number) => void,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (this.failed) throw this.failed;
      if (this.slot === undefined) {
        while (this.inFlight.size >= LANE_SLOTS_PER_TRANSFER && !this.failed) await new Promise<void>((resolve) => (this.waiting = resolve));
        if (this.failed) throw this.failed;
        const slot = await this.pool.acquire();
        if (this.failed) {
          this.pool.release(slot);
          throw this.failed;
        }
        this.slot = slot;
      }
      const n = Math.min(chunk.length - off, LANE_SLOT_BYTES - this.filled);
      await this.pool.write(this.slot, this.filled, chunk.subarray(off, off + n));
      this.filled += n;
      off += n;
      if (this.filled === LANE_SLOT_BYTES) this.flush();
    }
  }

  /** Sends the partly filled slot, if any (before EOF). */
  flush(): void {
    if (this.slot === undefined || this.filled === 0 || this.failed) return;
    this.inFlight.add(this.slot);
    this.sendLane(this.slot, this.filled);
    this.slot = undefined;
    this.filled = 0;
  }

  /** The guest returned a slot; false when it was not one this upload lent it. */
  returned(slot: number): boolean {
    if (!this.inFlight.delete(slot)) return false;
    this.pool.release(slot);
    this.wake();
    return true;
  }

  /** Writing stops (the source failed, the caller gave up, the channel ended): later writes fail with err. */
  fail(err: Error): void {
    this.failed ??= err;
    if (this.slot !== undefined) this.pool.release(this.slot); // filled here, never named to the guest
    this.slot = undefined;
    this.wake();
  }

  /**
   * The guest ended the channel (done, error, cancelled) or the session is over: the slots it
   * was sent come back too, since it reads none of them any more. Not before: a slot named to
   * the guest is the guest's until it returns it or ends the channel.
   */
  end(err: Error): void {
    this.fail(err);
    for (const s of this.inFlight) this.pool.release(s);
    this.inFlight.clear();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }
}

/**
 * A download's receiving side: grants the guest slots to fill while the data
 * read out of them and not yet consumed, plus the granted slots, fit in
 * `window`; copies each filled slot out in the order the guest named them and
 * hands the bytes to `deliver`.
 */
export class LaneReader {
  private readonly granted = new Set<number>();
  private held = 0;
  private acquiring = false;
  private ended = false;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: LanePool,
    private readonly window: number,
    private readonly sendGrant: (slot: number) => void,
    private readonly deliver: (data: Buffer) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Grants what the window allows (call once the transfer is open, and as data is consumed). */
  grant(): void {
    while (!this.ended && !this.acquiring && (this.granted.size + 1) * LANE_SLOT_BYTES + this.held <= this.window) {
      let slot: number | undefined;
      try {
        slot = this.pool.tryAcquire();
      } catch {
        return; // the session is ending
      }
      if (slot === undefined) {
        this.acquiring = true;
        this.pool.acquire().then(
          (s) => {
            this.acquiring = false;
            if (this.ended) this.pool.release(s);
            else {
              this.lend(s);
              this.grant();
            }
          },
          () => (this.acquiring = false),
        );
        return;
      }
      this.lend(slot);
    }
  }

  private lend(slot: number): void {
    this.granted.add(slot);
    this.sendGrant(slot);
  }

  /** The consumer took `bytes` of what was delivered. */
  consumed(bytes: number): void {
    this.held -= bytes;
    this.grant();
  }

  /** The guest filled `slot` with `length` bytes; false when that slot was not granted to this read. */
  filled(slot: number, length: number): boolean {
    if (!this.granted.delete(slot) || length < 1 || length > LANE_SLOT_BYTES) return false;
    this.held += length;
    this.inOrder(async () => {
      if (this.ended) return this.pool.release(slot);
      const data = await this.pool.read(slot, length);
      this.pool.release(slot);
      if (!this.ended) this.deliver(data);
    });
    return true;
  }

  /** Ends the read once every slot named so far is delivered (EOF, an error from the guest); then `fn`. */
  finish(fn: () => void): void {
    this.inOrder(() => {
      if (this.ended) return;
      this.end();
      fn();
    });
  }

  /** Slots are copied out one after the other, in the order the guest named them. */
  private inOrder(fn: () => void | Promise<void>): void {
    this.tail = this.tail.then(fn).catch((err: Error) => {
      if (this.ended) return;
      this.end();
      this.onError(err);
    });
  }

  /** The transfer is over: granted slots come back (the guest fills none for an ended channel). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const s of this.granted) this.pool.release(s);
    this.granted.clear();
  }
}
