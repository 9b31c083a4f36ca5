import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findExecutable } from './find-executable.js';

/**
 * `qemu-system-x86_64 --version` costs a process start (40-80 ms here) and its answer only
 * changes with the binary. It is remembered in `<run dir>/qemu-version.json`, per binary path,
 * with the identity of the file the path leads to (dev, inode, size, mtime; symlinks followed):
 * an upgrade (a new file, or the old one rewritten) runs it again. A failure is never remembered.
 */
export const QEMU_VERSION_FILE = 'qemu-version.json';

interface Entry {
  /** dev:ino:size:mtimeNs of the file the path leads to. */
  identity: string;
  version: string;
}

interface CacheFile {
  format: 1;
  binaries: Record<string, Entry>;
}

/** What `--version` answered: its first line, or why it did not run. */
export type QemuVersionAnswer = { ok: true; line: string } | { ok: false; reason: string };

export function runQemuVersion(qemu: string): QemuVersionAnswer {
  const v = spawnSync(qemu, ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return { ok: false, reason: `${qemu} does not run: ${v.error?.message ?? v.stderr.trim()}` };
  return { ok: true, line: (v.stdout.split('\n')[0] ?? '').trim() };
}

function identity(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch {
    return undefined;
  }
}

function readCache(file: string): CacheFile {
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as CacheFile;
    if (c.format === 1 && c.binaries && typeof c.binaries === 'object') return c;
  } catch {
    // missing or unreadable: start afresh
  }
  return { format: 1, binaries: {} };
}

/**
 * `qemu --version`'s first line for the binary `qemu` (a name looked up in PATH, or a path),
 * from the run dir's cache when the binary is the one it was recorded for; else run (and
 * recorded when it answered). A binary that does not run gives the reason, as the spawn would.
 */
export function qemuVersion(qemu: string, runDir: string, run: (qemu: string) => QemuVersionAnswer = runQemuVersion): string {
  const path = findExecutable(qemu);
  const id = path ? identity(path) : undefined;
  const file = join(runDir, QEMU_VERSION_FILE);
  const cache = readCache(file);
  const hit = path && id ? cache.binaries[path] : undefined;
  if (hit && hit.identity === id && typeof hit.version === 'string') return hit.version;
  const answer = run(path ?? qemu);
  if (!answer.ok) return answer.reason;
  if (path && id && identity(path) === id) {
    // Written whole then renamed: a concurrent reader sees the old file or the new one.
    try {
      mkdirSync(runDir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ ...cache, binaries: { ...cache.binaries, [path]: { identity: id, version: answer.line } } })}\n`);
      try {
        renameSync(tmp, file);
      } finally {
        rmSync(tmp, { force: true });
      }
    } catch {
      // an unwritable run dir costs the next start one more --version, nothing else
    }
  }
  return answer.line;
}
