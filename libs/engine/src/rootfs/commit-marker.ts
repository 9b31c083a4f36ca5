import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Next to rootfs/: `boot-id`, "<kernel boot id> <commit nonce>" of the commit,
 * and `synced`, empty until it holds that nonce: the tree is known to be on
 * disk (a background `sync -f` returned). Until then the tree is trusted only
 * within the boot that wrote it.
 */
export const BOOT_ID_FILE = 'boot-id';
export const SYNCED_MARKER = 'synced';

let bootIdCache: string | null | undefined;
/** This kernel boot's id (Linux), or undefined where there is none. */
export function currentBootId(): string | undefined {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootIdCache = null;
    }
  }
  return bootIdCache ?? undefined;
}

/**
 * Whether an image dir's committed tree can be trusted: committed in this boot,
 * or confirmed on disk since (the marker holds the commit's nonce). Trees from
 * before these markers existed (no boot-id file) are trusted as before.
 */
export async function commitTrusted(imageDir: string): Promise<boolean> {
  const commit = await readFile(join(imageDir, BOOT_ID_FILE), 'utf8').catch(() => undefined);
  if (commit === undefined) return true;
  const [bootId, nonce] = commit.trim().split(' ');
  if (bootId === currentBootId()) return true;
  const synced = await readFile(join(imageDir, SYNCED_MARKER), 'utf8').catch(() => undefined);
  return synced !== undefined && synced === nonce;
}
