import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { BOOT_ID_FILE, SYNCED_MARKER, commitTrusted, currentBootId } from './commit-marker.js';
import { BLOCK_DIR, BLOCK_FILE, BLOCK_IMAGE_FSTYPE } from './block-format.js';
import { HostLock } from './host-lock.js';
import { imageRootfsComplete, imageRootfsDir, removeTree } from './image-rootfs-dir.js';
import { OWNERSHIP_FILE, type OwnershipRecordFile } from './ownership-record.js';
import { syncFilesystem, syncInBackground } from './sync-filesystem.js';

/**
 * An image's root filesystem as one read-only filesystem image (erofs), built once
 * from the unpacked rootfs and kept beside it, for VMs that take their root from a
 * block device (the qemu backend: docs/VM.md "Devices"):
 *
 *   rootfs/images/<hex>/block-<BLOCK_IMAGE_FORMAT>/rootfs.erofs   the filesystem image
 *   rootfs/images/<hex>/block-<BLOCK_IMAGE_FORMAT>/boot-id, synced its commit markers
 *   rootfs/images/<hex>/.tmp-block-<pid>-<rnd>/                    a build in progress
 *
 * Content-addressed like its rootfs: the image's manifest digest names the
 * directory, and the format (the builder and its options) names the block dir, so
 * a change of options builds anew instead of reusing an image made another way.
 * The block dir appears only through one rename(2) of a finished build, under the
 * image's host lock (the one unpacks and removals take); it is trusted with the
 * rootfs's rule (commit-marker.ts): committed in this boot, or known to be on disk.
 * `image rm` + `image prune` remove it with the rootfs (the whole `<hex>/` goes).
 */
export { BLOCK_IMAGE_FORMAT, BLOCK_IMAGE_FSTYPE } from './block-format.js';

export interface ImageBlock {
  /** The filesystem image file (read-only; open it, never write it). */
  path: string;
  fsType: typeof BLOCK_IMAGE_FSTYPE;
  /** Seconds this call spent building it; absent when it was there already. */
  buildSeconds?: number;
}

export interface EnsureImageBlockOptions {
  home: MonocoreHome;
  /** Manifest digest "sha256:…" of an unpacked image (ensureImageRootfs). */
  imageId: string;
  /** How long to wait for another process holding the image's lock (default 30 min). */
  lockTimeoutMs?: number;
  onLockWait?: (holder: string) => void;
}

/** Where the image's block image is (or will be). */
export function imageBlockPath(home: MonocoreHome, imageId: string): string {
  return join(imageRootfsDir(home, imageId), BLOCK_DIR, BLOCK_FILE);
}

/**
 * The image id of a rootfs path inside this home's image store
 * (`<home>/rootfs/images/<hex>/rootfs`, symlinks resolved), or undefined for any
 * other directory (MicroVm.builder().rootPath(dir), tests).
 */
export async function storeImageOf(home: MonocoreHome, rootfs: string): Promise<string | undefined> {
  const real = await realpath(rootfs).catch(() => undefined);
  const base = await realpath(home.imageRootfsDir).catch(() => undefined);
  if (!real || !base || basename(real) !== 'rootfs') return undefined;
  const imageDir = dirname(real);
  const hex = basename(imageDir);
  if (dirname(imageDir) !== base || !/^[a-f0-9]{64}$/.test(hex)) return undefined;
  return `sha256:${hex}`;
}

async function committed(home: MonocoreHome, imageId: string): Promise<string | undefined> {
  const file = imageBlockPath(home, imageId);
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  // Committed in another boot and never confirmed on disk: the file may hold zeros
  // where a crash lost its data. Not complete: build again.
  if (!(await commitTrusted(dirname(file)))) return undefined;
  return file;
}

/** Whether the image's block image is built and trusted (no lock taken, nothing built). */
export async function imageBlockReady(home: MonocoreHome, imageId: string): Promise<boolean> {
  return (await committed(home, imageId)) !== undefined;
}

const inProcess = new Map<string, Promise<ImageBlock>>();

/**
 * Makes sure the image's block image exists and returns it. Idempotent (at once
 * when built), one build for concurrent callers of one host (in-process promise,
 * then the image's flock), crash-safe (a killed build leaves only a `.tmp-block-*`
 * dir, removed by the next build). The rootfs must be unpacked and trusted.
 */
export function ensureImageBlock(opts: EnsureImageBlockOptions): Promise<ImageBlock> {
  const key = `${opts.home.root}\0${opts.imageId}`;
  const running = inProcess.get(key);
  if (running) return running;
  const p = ensure(opts).finally(() => inProcess.delete(key));
  inProcess.set(key, p);
  return p;
}

async function ensure(opts: EnsureImageBlockOptions): Promise<ImageBlock> {
  const { home, imageId } = opts;
  const imageDir = imageRootfsDir(home, imageId); // validates the id
  const done = await committed(home, imageId);
  if (done) return { path: done, fsType: BLOCK_IMAGE_FSTYPE };
  const hex = basename(imageDir);
  const locks = join(home.imageRootfsDir, '.locks');
  await mkdir(locks, { recursive: true });
  const lock = await HostLock.acquire(join(locks, `${hex}.lock`), {
    ...(opts.lockTimeoutMs !== undefined ? { timeoutMs: opts.lockTimeoutMs } : {}),
    ...(opts.onLockWait ? { onWait: opts.onLockWait } : {}),
  });
  try {
    const again = await committed(home, imageId);
    if (again) return { path: again, fsType: BLOCK_IMAGE_FSTYPE };
    const rootfs = await imageRootfsComplete(home, imageId);
    if (!rootfs) {
      throw new MonocoreError('MC_ROOTFS_INVALID_ARGUMENT', `image ${imageId} has no unpacked rootfs on this host to build its block image from (pull it first)`, { imageId });
    }
    // Under the lock nobody else builds here: every leftover is from a killed build, an
    // untrusted commit or another format.
    for (const name of await readdir(imageDir)) {
      if (name.startsWith('.tmp-block-') || (name.startsWith('block-') && name !== BLOCK_DIR)) await removeTree(join(imageDir, name));
    }
    const finalDir = join(imageDir, BLOCK_DIR);
    if (await lstat(finalDir).then(() => true, () => false)) {
      const aside = join(imageDir, `.tmp-block-${process.pid}-${randomBytes(4).toString('hex')}`);
      await rename(finalDir, aside);
      await removeTree(aside);
    }
    const tmp = join(imageDir, `.tmp-block-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp, { recursive: true });
    try {
      const started = performance.now();
      const record = await readRecord(imageDir);
      await buildBlockImage(rootfs.rootfs, join(tmp, BLOCK_FILE), { allRoot: record?.ownershipRecorded === true });
      const bootId = currentBootId();
      // The nonce ties the `synced` marker to this commit (as for the rootfs: image-rootfs.ts).
      const nonce = randomBytes(8).toString('hex');
      if (bootId) {
        await writeFile(join(tmp, BOOT_ID_FILE), `${bootId} ${nonce}\n`, { mode: 0o644 });
        await writeFile(join(tmp, SYNCED_MARKER), '', { mode: 0o644 });
      } else {
        await syncFilesystem(tmp);
      }
      // The commit point.
      await rename(tmp, finalDir);
      if (bootId) syncInBackground(finalDir, join(finalDir, SYNCED_MARKER), nonce);
      return { path: join(finalDir, BLOCK_FILE), fsType: BLOCK_IMAGE_FSTYPE, buildSeconds: (performance.now() - started) / 1000 };
    } catch (err) {
      await removeTree(tmp).catch(() => undefined);
      throw err;
    }
  } finally {
    await lock.release();
  }
}

async function readRecord(imageDir: string): Promise<OwnershipRecordFile | undefined> {
  try {
    return JSON.parse(await readFile(join(imageDir, OWNERSHIP_FILE), 'utf8')) as OwnershipRecordFile;
  } catch {
    return undefined;
  }
}

let toolAvailable: boolean | undefined;
/** Whether mkfs.erofs runs here (cached): pulls build the block image only where it can be built. */
export function blockImageToolAvailable(): boolean {
  toolAvailable ??= spawnSync('mkfs.erofs', ['--help'], { stdio: 'ignore' }).status === 0;
  return toolAvailable;
}

export interface BuildBlockImageOptions {
  /**
   * Every file owned by root. For a tree unpacked by a non-root user (ownership.json
   * says `ownershipRecorded`): its host owner is that user, while images almost always
   * mean root (the record's defaultOwner); the other owners it lists are not applied.
   */
  allRoot?: boolean;
}

/**
 * Builds an erofs image of the directory `rootfs` at `out` (not atomically: callers
 * build into a temp name). Owners, modes (setuid/setgid/sticky), mtimes, symlinks,
 * hardlinks and xattrs (security.capability included) come from the tree as they
 * are; mkfs.erofs never follows a symlink. Uncompressed: the guest reads it at
 * block-device speed with no decompression on its (emulated) CPU (docs/OCI.md
 * "Block images"; bench/block-root.mjs compares the alternatives).
 */
export async function buildBlockImage(rootfs: string, out: string, opts: BuildBlockImageOptions = {}): Promise<void> {
  // erofs-utils 1.5 (Debian 12): --quiet (-q is not an option there).
  const args = ['--quiet', ...(opts.allRoot ? ['--all-root'] : []), out, rootfs];
  try {
    await new Promise<void>((resolve, reject) => {
      execFile('mkfs.erofs', args, { maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
        if (err) reject(Object.assign(err, { stderr }));
        else resolve();
      });
    });
    // Readable through an fd by any uid (QEMU opens nothing by path; see qemu-devices.ts).
    await chmod(out, 0o644);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    const why = err.code === 'ENOENT' ? 'mkfs.erofs not found (apt-get install erofs-utils)' : (err.stderr?.trim() || err.message);
    throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `cannot build the block image of ${rootfs}: ${why}`, { rootfs }, { cause: e });
  }
}
