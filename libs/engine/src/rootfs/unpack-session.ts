import { chmod, lchown, lstat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceEntry, OwnershipRecordFile } from './ownership-record.js';

interface DirMeta {
  mode: number;
  uid: number;
  gid: number;
  atime?: Date;
  mtime?: Date;
}

/** Whether this process can give files their real owners (root, or CAP_CHOWN we do not probe). */
export function canChown(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * State shared by the layers of one unpack: directory metadata deferred to the
 * end (a directory a lower layer made read-only must stay writable while upper
 * layers fill it, and adding entries would change its mtime), and what must be
 * recorded instead of applied (owners when not root, device nodes always).
 * Keys are real paths relative to the root ('' = the root).
 */
export class UnpackSession {
  readonly chown: boolean;
  private readonly dirs = new Map<string, DirMeta>();
  private readonly owners = new Map<string, { uid: number; gid: number }>();
  private readonly devices = new Map<string, DeviceEntry>();
  /** File capabilities (security.capability, base64) by path: recorded for the guest when the host files cannot carry them (non-root unpack). */
  private readonly capabilities = new Map<string, string>();

  /** Permission bits open(2) strips from new files (read once: process.umask() is per process). */
  readonly umask: number = process.umask();
  /**
   * Owner every newly created file gets without a chown, when known: only for a
   * fresh tree whose directories carry no setgid bit (ensureImageRootfs' temp
   * dir), where it is the process's euid/egid. Saves one syscall per file.
   */
  readonly newFileOwner: { uid: number; gid: number } | undefined;

  constructor(
    readonly root: string,
    opts: { chown?: boolean; freshTree?: boolean } = {},
  ) {
    this.chown = opts.chown ?? canChown();
    this.newFileOwner = opts.freshTree && typeof process.geteuid === 'function' && typeof process.getegid === 'function'
      ? { uid: process.geteuid(), gid: process.getegid() }
      : undefined;
  }

  /** Whether a file just created with `open(…, mode & 0777)` still needs fchown(uid, gid). */
  needsChown(uid: number, gid: number): boolean {
    if (!this.chown) return false;
    const o = this.newFileOwner;
    return !o || o.uid !== uid || o.gid !== gid;
  }

  /** Whether that file still needs fchmod(mode): special bits, bits the umask removed, or a chown (which clears setuid/setgid). */
  needsChmod(mode: number, chowned: boolean): boolean {
    return (mode & 0o7000) !== 0 || (mode & 0o777 & ~this.umask) !== (mode & 0o777) || (chowned && (mode & 0o6000) !== 0);
  }

  setDir(rel: string, meta: DirMeta): void {
    this.dirs.set(rel, meta);
  }

  /**
   * A parent directory the layer did not list: 0755 root:root (like containerd),
   * whatever the process umask, unless an entry describes it later.
   */
  setImplicitDir(rel: string): void {
    if (!this.dirs.has(rel)) this.dirs.set(rel, { mode: 0o755, uid: 0, gid: 0 });
  }

  /** Records the owner of a path when it cannot be applied (not root). */
  setOwner(rel: string, uid: number, gid: number): void {
    if (this.chown) return;
    if (uid === 0 && gid === 0) this.owners.delete(rel);
    else this.owners.set(rel, { uid, gid });
  }

  setCapability(rel: string, value: Buffer): void {
    this.capabilities.set(rel, value.toString('base64'));
  }

  setDevice(dev: DeviceEntry): void {
    this.devices.set(dev.path, dev);
  }

  /** A path was removed or replaced: forget what was recorded for it (and below it, if a directory). */
  forget(rel: string, wasDir: boolean): void {
    this.dirs.delete(rel);
    this.owners.delete(rel);
    this.devices.delete(rel);
    this.capabilities.delete(rel);
    if (!wasDir) return;
    const prefix = rel === '' ? '' : `${rel}/`;
    for (const m of [this.dirs, this.owners, this.devices, this.capabilities] as Map<string, unknown>[]) {
      for (const k of m.keys()) if (k.startsWith(prefix)) m.delete(k);
    }
  }

  /**
   * Applies deferred directory metadata: owner first (chown clears setuid/setgid),
   * then mode, then times. A path that is no longer a real directory is skipped
   * (never chmod through a symlink).
   */
  async finish(concurrency = 16): Promise<void> {
    const items = [...this.dirs.entries()];
    this.dirs.clear();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < items.length) {
        const [rel, m] = items[next++] as [string, DirMeta];
        const abs = rel === '' ? this.root : join(this.root, rel);
        const st = await lstat(abs).catch(() => undefined);
        if (!st?.isDirectory()) continue;
        if (this.chown) await lchown(abs, m.uid, m.gid);
        await chmod(abs, m.mode);
        if (m.mtime) await utimes(abs, m.atime ?? m.mtime, m.mtime);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  }

  record(imageId: string): OwnershipRecordFile {
    const byPath = <T extends { path: string }>(a: T, b: T): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    return {
      version: 1,
      imageId,
      ownershipRecorded: !this.chown,
      defaultOwner: { uid: 0, gid: 0 },
      owners: [...this.owners.entries()].map(([path, o]) => ({ path, uid: o.uid, gid: o.gid })).sort(byPath),
      devices: [...this.devices.values()].sort(byPath),
      ...(this.capabilities.size > 0
        ? { capabilities: [...this.capabilities.entries()].map(([path, value]) => ({ path, value })).sort(byPath) }
        : {}),
    };
  }
}
