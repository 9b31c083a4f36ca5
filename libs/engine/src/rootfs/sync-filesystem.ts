import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { MonocoreError } from '../errors/index.js';
import { libc } from './libc.js';

/**
 * Flushes everything written to the filesystem holding `path` (syncfs(2); sync(2)
 * where there is none). One call instead of an fsync per file: an unpacked
 * rootfs is thousands of files, and it must be on disk before the rename that
 * calls it complete — else a power loss could leave a "complete" tree of empty
 * files (ext4's delayed allocation commits the names before the data).
 */
export async function syncFilesystem(path: string): Promise<void> {
  const c = libc();
  if (!c.syncfs) {
    await new Promise<void>((resolve, reject) => c.sync.async((err) => (err ? reject(err) : resolve())));
    return;
  }
  const syncfs = c.syncfs;
  const fh = await open(path, 'r');
  try {
    const res = await new Promise<number>((resolve, reject) => syncfs.async(fh.fd, (err, r) => (err ? reject(err) : resolve(r))));
    if (res !== 0) {
      throw new MonocoreError('MC_ROOTFS_UNPACK_FAILED', `syncfs(${path}) failed (errno ${c.errno()})`, { path });
    }
  } finally {
    await fh.close();
  }
}

/**
 * Flushes the filesystem holding `dir` in a detached `sync -f` process, then
 * writes `content` into `marker`, an existing file: it is never created (dd
 * conv=nocreat), so a tree deleted meanwhile does not get a new entry under the
 * deleter's feet. Nothing waits for it: a CLI can exit at once (a syncfs in one
 * of our own threads would hold the process until it returns).
 */
export function syncInBackground(dir: string, marker: string, content: string, moreMarkers: string[] = []): void {
  try {
    // Markers from $4 on get the same content after the same flush.
    const script = 'sync -f "$1" && c="$3" && m="$2" && shift 3 && for f in "$m" "$@"; do printf %s "$c" | dd of="$f" conv=notrunc,nocreat status=none; done';
    const child = spawn('sh', ['-c', script, 'sh', dir, marker, content, ...moreMarkers], { detached: true, stdio: 'ignore' });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No marker: the tree is trusted within this boot only, and unpacked again after a reboot.
  }
}
