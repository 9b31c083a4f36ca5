import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import { HostLock } from '../rootfs/host-lock.js';

/**
 * Numbered resources shared by every process on this host (egress address
 * blocks, per-VM uids): slot N is taken by holding an flock on
 * `<dir>/slot-N.lock` for as long as it is in use. The kernel drops the lock
 * when its holder dies, so a crashed worker leaks nothing, and workers with
 * different MONOCORE_HOMEs share one numbering (the resources are host-wide).
 */
export class HostSlots {
  constructor(
    /** e.g. /run/monocore/egress */
    readonly dir: string,
    readonly count: number,
    /** What the slots are, for the error when none is free. */
    private readonly what: string,
  ) {}

  /** Takes a free slot, starting at a random one (fewer collisions between processes). */
  async acquire(): Promise<{ slot: number; lock: HostLock }> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const start = Math.floor(Math.random() * this.count);
    for (let i = 0; i < this.count; i++) {
      const slot = (start + i) % this.count;
      const lock = await HostLock.tryAcquire(this.lockPath(slot));
      if (lock) return { slot, lock };
    }
    throw new MonocoreError('MC_VM_START_FAILED', `all ${this.count} ${this.what} are in use on this host`, { dir: this.dir });
  }

  /** The slot's lock if nobody holds it (its resource is stale), else undefined. */
  async tryTake(slot: number): Promise<HostLock | undefined> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    return HostLock.tryAcquire(this.lockPath(slot));
  }

  private lockPath(slot: number): string {
    return join(this.dir, `slot-${slot}.lock`);
  }
}
