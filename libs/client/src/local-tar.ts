import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { mkdirSync } from 'node:fs';
import { create as tarCreate, extract as tarExtract } from 'tar';

/**
 * Local directories as tar streams, the form the files API moves directories
 * in (`format=tar`). What comes out of a guest is hostile: extracting it must
 * never write outside the target directory.
 */

/** A tar stream of `dir`'s contents (entries relative to it, as the guest's `tar -c -C DIR .` makes them). */
export function packDirectory(dir: string, entries: string[] = ['.']): Readable {
  // portable: no uid/gid names of this machine; the guest extracts as root and keeps modes.
  return Readable.from(tarCreate({ cwd: dir, portable: true, noDirRecurse: false }, entries) as unknown as AsyncIterable<Buffer>);
}

/** Entry types a guest's tar may create here: files, directories and symbolic links; never devices, FIFOs or hard links. */
const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink']);

/**
 * Extracts a tar stream into `dir` (created if missing). Barriers against a
 * hostile archive, most of them node-tar's own: absolute names and `..` are
 * refused (preservePaths off), no entry is written through a symbolic link
 * the archive made (node-tar checks every parent with lstat), devices, FIFOs
 * and hard links are skipped, setuid/setgid/sticky bits are dropped and the
 * owner is the current user (preserveOwner off).
 */
export async function extractDirectory(tar: AsyncIterable<Uint8Array> | Readable, dir: string): Promise<{ entries: number; skipped: string[] }> {
  mkdirSync(dir, { recursive: true });
  let entries = 0;
  const skipped: string[] = [];
  const sink = tarExtract({
    cwd: dir,
    preservePaths: false,
    preserveOwner: false,
    strict: true,
    filter: (path, entry) => {
      const type = 'type' in entry ? entry.type : 'File';
      if (!ALLOWED_TYPES.has(type)) {
        skipped.push(`${path} (${type})`);
        return false;
      }
      if ('mode' in entry && typeof entry.mode === 'number') entry.mode &= 0o777;
      entries++;
      return true;
    },
  });
  await pipeline(tar instanceof Readable ? tar : Readable.from(tar), sink);
  return { entries, skipped };
}
