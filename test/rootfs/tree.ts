// Test helpers: describe a directory tree (never following symlinks) so two
// trees, or one tree before and after an attack, can be compared exactly.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size?: number;
  sha256?: string;
  target?: string;
  ino?: number;
}

export function describeTree(root: string, opts: { mtimes?: boolean; ino?: boolean } = {}): Record<string, TreeEntry> {
  const out: Record<string, TreeEntry> = {};
  const walk = (rel: string): void => {
    const abs = rel === '' ? root : join(root, rel);
    const st = lstatSync(abs);
    const e: TreeEntry = {
      type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other',
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: opts.mtimes === false ? 0 : Math.floor(st.mtimeMs / 1000),
    };
    if (opts.ino) e.ino = st.ino;
    if (e.type === 'file') {
      e.size = st.size;
      e.sha256 = createHash('sha256').update(readFileSync(abs)).digest('hex');
    }
    if (e.type === 'symlink') e.target = readlinkSync(abs);
    out[rel === '' ? '.' : rel] = e;
    if (e.type === 'dir') for (const n of readdirSync(abs).sort()) walk(rel === '' ? n : `${rel}/${n}`);
  };
  walk('');
  return out;
}

const temps: string[] = [];

/** A fresh directory under the OS temp dir; removeTempDirs() (call it in after()) deletes them all. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `mc-rootfs-${prefix}-`));
  temps.push(d);
  return d;
}

export function removeTempDirs(): void {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Every regular file's content under root, by path (to prove a secret was never copied in). */
export function fileContents(root: string): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const [p, e] of Object.entries(describeTree(root))) if (e.type === 'file') m.set(p, readFileSync(join(root, p)));
  return m;
}
