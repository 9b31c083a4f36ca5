import { open, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { MonocoreError, type ErrorCode } from '../errors/index.js';
import { libc } from './libc.js';

/**
 * An exclusive lock shared by every process on this host, held through
 * flock(2) on a lock file. Unlike a pid/lock-directory scheme there is no stale
 * lock to detect or steal: the kernel drops the lock when the holder's file
 * descriptor closes, including when the process is SIGKILLed. Node has no
 * flock binding, so it is called through koffi (already a dependency of
 * @monocore/native); LOCK_NB + polling keeps the event loop free.
 *
 * Two HostLocks on the same file conflict even inside one process (flock locks
 * belong to open file descriptions, and every acquire opens the file anew).
 */
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;

export interface HostLockOptions {
  /** Give up after this long (default 30 min: a big image can take minutes to unpack). */
  timeoutMs?: number;
  /** Poll interval while another process holds the lock (default 50 ms). */
  pollMs?: number;
  /** Called once when the lock is busy, e.g. to log that we wait. */
  onWait?: (holder: string) => void;
  /** The code of the timeout error (default MC_ROOTFS_UNPACK_FAILED: the lock was born for unpacking). */
  code?: ErrorCode;
}

export class HostLock {
  private constructor(
    readonly path: string,
    private fh: FileHandle | undefined,
  ) {}

  /** Try once; undefined when another holder has it. */
  static async tryAcquire(path: string): Promise<HostLock | undefined> {
    const { flock: f, errno } = libc();
    const fh = await open(path, 'a+', 0o644);
    if (f(fh.fd, LOCK_EX | LOCK_NB) === 0) {
      // Diagnostics only: who holds it (read by a waiter's error message).
      await fh.truncate(0).catch(() => undefined);
      await fh.write(`${process.pid} ${new Date().toISOString()}\n`).catch(() => undefined);
      return new HostLock(path, fh);
    }
    const e = errno();
    await fh.close();
    if (e === EWOULDBLOCK) return undefined;
    throw new MonocoreError('MC_ROOTFS_UNPACK_FAILED', `flock(${path}) failed with errno ${e}`, { path, errno: e });
  }

  static async acquire(path: string, opts: HostLockOptions = {}): Promise<HostLock> {
    const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
    const pollMs = opts.pollMs ?? 50;
    const started = performance.now();
    let told = false;
    for (;;) {
      const lock = await HostLock.tryAcquire(path);
      if (lock) return lock;
      const holder = await readHolder(path);
      if (!told) {
        told = true;
        opts.onWait?.(holder);
      }
      const waited = performance.now() - started;
      if (waited >= timeoutMs) {
        // The age in the message tells a stuck holder from plain contention.
        throw new MonocoreError(
          opts.code ?? 'MC_ROOTFS_UNPACK_FAILED',
          `lock ${path} still held after ${Math.round(waited / 1000)} s (holder: ${holder || 'unknown'})`,
          { path, holder, waitedMs: Math.round(waited) },
        );
      }
      await sleep(pollMs);
    }
  }

  async release(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    this.fh = undefined;
    libc().flock(fh.fd, LOCK_UN);
    await fh.close();
  }
}

async function readHolder(path: string): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      return (await fh.readFile('utf8')).trim();
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}
