import { chmod, lstat, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { commitTrusted } from './commit-marker.js';
import { OWNERSHIP_FILE, type OwnershipRecordFile } from './ownership-record.js';

// Where an image's unpacked root lives and whether it is complete: what starting a VM of a
// local image needs, without loading the unpacker (tar, zstd, the erofs writer) that
// image-rootfs.ts's ensureImageRootfs brings. Layout: image-rootfs.ts.

export interface ImageRootfs {
  rootfs: string;
  /** True when uid/gid could not be applied (not root) and were recorded in ownership.json instead. */
  ownershipRecorded: boolean;
  /**
   * Seconds this call spent unpacking: applying layers and committing the tree,
   * waits for layers still downloading excluded. Absent when the rootfs was complete already.
   */
  unpackSeconds?: number;
  /** Seconds spent finishing the block image (walk + metadata) after the last layer; absent when none was built. */
  blockSeconds?: number;
}

export const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
export function imageHex(imageId: string): string {
  if (!DIGEST_RE.test(imageId)) {
    throw new MonocoreError('MC_ROOTFS_INVALID_ARGUMENT', `imageId "${imageId}" is not a sha256 digest (sha256:<64 hex>)`, { imageId });
  }
  return imageId.slice('sha256:'.length);
}

/** The directory holding an image's rootfs/ and ownership.json. */
export function imageRootfsDir(home: MonocoreHome, imageId: string): string {
  return join(home.imageRootfsDir, imageHex(imageId));
}

/** Where the image's root filesystem is (or will be) unpacked. */
export function imageRootfsPath(home: MonocoreHome, imageId: string): string {
  return join(imageRootfsDir(home, imageId), 'rootfs');
}

/** The ownership/device record of an unpacked image, or undefined when it is not unpacked. */
export async function readOwnershipRecord(home: MonocoreHome, imageId: string): Promise<OwnershipRecordFile | undefined> {
  try {
    return JSON.parse(await readFile(join(imageRootfsDir(home, imageId), OWNERSHIP_FILE), 'utf8')) as OwnershipRecordFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The image's rootfs when it is unpacked and trusted (committed, and on disk or from this boot); else undefined. */
export async function imageRootfsComplete(home: MonocoreHome, imageId: string): Promise<ImageRootfs | undefined> {
  const dir = imageRootfsDir(home, imageId);
  try {
    const st = await stat(join(dir, 'rootfs'));
    if (!st.isDirectory()) return undefined;
    const rec = JSON.parse(await readFile(join(dir, OWNERSHIP_FILE), 'utf8')) as OwnershipRecordFile;
    // Committed in another boot and never confirmed on disk: a crash may have
    // lost file data behind the committed names. Not complete: unpack again.
    if (!(await commitTrusted(dir))) return undefined;
    return { rootfs: join(dir, 'rootfs'), ownershipRecorded: rec.ownershipRecorded === true };
  } catch {
    return undefined;
  }
}

/**
 * rm -rf that also works for a non-root owner of read-only directories
 * (layers make directories 0555): on EACCES/EPERM, make directories writable
 * and retry. Never follows symlinks (lstat).
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw err;
  }
  await makeWritable(dir);
  await rm(dir, { recursive: true, force: true });
}

async function makeWritable(dir: string): Promise<void> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await chmod(dir, 0o700).catch(() => undefined);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of names) await makeWritable(join(dir, n));
}
