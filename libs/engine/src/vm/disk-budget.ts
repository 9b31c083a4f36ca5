import { statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { MonocoreError } from '../errors/index.js';

/** MONOCORE_DISK_RESERVE_MIB: free disk a host keeps for itself (default 1024 MiB). */
export const DISK_RESERVE_ENV = 'MONOCORE_DISK_RESERVE_MIB';
export const DEFAULT_DISK_RESERVE_MIB = 1024;

const MIB = 1024 * 1024;

/** The reserve from the environment; a bad value is a usage error naming the variable. */
export function diskReserveFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[DISK_RESERVE_ENV];
  if (raw === undefined || raw.trim() === '') return DEFAULT_DISK_RESERVE_MIB;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    throw new MonocoreError('MC_USAGE', `${DISK_RESERVE_ENV} must be a whole number of MiB (0 or more), got ${JSON.stringify(raw)}`, { value: raw });
  }
  return n;
}

/** Bytes a disk file already has on the host (its allocated blocks; 0 when it does not exist yet). */
function allocatedBytes(path: string): number {
  try {
    return statSync(path).blocks * 512;
  } catch {
    return 0;
  }
}

/**
 * Keeps a host's free disk above a reserve although every VM's writable disk is
 * sparse. A running VM may still grow its disk up to its full size, so a boot is
 * admitted only if the space free now covers what every running VM's disk (this
 * one included) may still take, plus the reserve: the sum is never overcommitted,
 * so no guest can push the host under its reserve, however much it writes (it gets
 * ENOSPC in its own disk first). A refused boot is MC_VM_DISK_RESERVE (retryable:
 * space may be freed, or another VM stop).
 *
 * One budget per backend object (a worker host has one): VMs started by other
 * processes on the same filesystem are seen only through the free space.
 */
export class DiskBudget {
  readonly reserveMib: number;
  /** Disk path → size, for every running VM (keyed by path: a restarting service reuses its disk). */
  readonly #live = new Map<string, number>();

  constructor(reserveMib: number) {
    this.reserveMib = reserveMib;
  }

  /** What the running VMs' disks may still grow by, bytes. */
  promisedBytes(exceptPath?: string): number {
    let sum = 0;
    for (const [path, sizeBytes] of this.#live) if (path !== exceptPath) sum += Math.max(0, sizeBytes - allocatedBytes(path));
    return sum;
  }

  /**
   * Admits the disk of VM `id` (file `path`, `sizeMib`, created or not yet) or throws
   * MC_VM_DISK_RESERVE naming every number. Returns the release to call when the VM ends.
   */
  admit(id: string, path: string, sizeMib: number): () => void {
    const sizeBytes = sizeMib * MIB;
    const fs = statfsSync(dirname(path));
    const free = fs.bavail * fs.bsize;
    const promised = this.promisedBytes(path);
    const growth = Math.max(0, sizeBytes - allocatedBytes(path));
    const reserve = this.reserveMib * MIB;
    if (free - promised - growth < reserve) {
      const m = (b: number): number => Math.floor(b / MIB);
      throw new MonocoreError(
        'MC_VM_DISK_RESERVE',
        `vm "${id}": not started: its ${sizeMib} MiB disk may still grow by ${m(growth)} MiB and running VMs' disks by ${m(promised)} MiB, ` +
          `but only ${m(free)} MiB are free on ${dirname(path)} and ${this.reserveMib} MiB must stay free (${DISK_RESERVE_ENV}); ` +
          'give services a smaller `disk`, remove unused ones, or free space',
        { id, diskMib: sizeMib, growthMib: m(growth), promisedMib: m(promised), freeMib: m(free), reserveMib: this.reserveMib },
      );
    }
    this.#live.set(path, sizeBytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#live.delete(path);
    };
  }
}
