import { readdir, readFile, realpath } from 'node:fs/promises';
import type { MonocoreHome } from '../home/index.js';
import { parsePidFileName, SPARE_ID } from '../vm/orphans.js';

/**
 * Image ids whose rootfs a live process on this host names on its command line:
 * the hypervisors (QEMU's `-add-fd …,opaque=<image dir>/block-…/rootfs.erofs`, the
 * block image it holds as an fd; the libkrun child's root argument). Asking the kernel instead of keeping our own "in use" records means
 * a crashed worker leaves nothing stale behind, and a VM started by any process
 * (worker, `monocore run`) counts. Linux only; elsewhere nothing is reported.
 */
export async function imageRootfsIdsInUse(home: MonocoreHome): Promise<Set<string>> {
  const used = new Set<string>();
  const bases = new Set([home.imageRootfsDir]);
  bases.add(await realpath(home.imageRootfsDir).catch(() => home.imageRootfsDir));
  const patterns = [...bases].map((b) => new RegExp(`${escapeRegExp(b)}/([a-f0-9]{64})(?:/|\\0|,|$)`, 'g'));
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  } catch {
    return used;
  }
  const spares = await spareOnlyPids(home);
  await Promise.all(
    pids.map(async (pid) => {
      if (spares.has(pid)) return;
      // A process may exit meanwhile, or belong to a user we cannot read: skip it.
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      for (const re of patterns) for (const m of cmdline.matchAll(re)) used.add(`sha256:${m[1]}`);
    }),
  );
  return used;
}

/**
 * QEMUs that are spares and nothing else (docs/SNAPSHOTS.md "Spares"): a restore made ahead of
 * any request holds its image open but runs no VM. Removing the image leaves it stale (its
 * template goes with the image, and a spare is only adopted while its template is current), so
 * it does not keep the image. Known by their pid records (orphans.ts): `vm-spare-<hex>-<pid>.json`
 * with no record of a VM for the same pid (an adopted spare gets its VM's record first).
 */
async function spareOnlyPids(home: MonocoreHome): Promise<Set<string>> {
  const names = await readdir(home.runDir).catch(() => [] as string[]);
  const spare = new Set<string>();
  const vm = new Set<string>();
  for (const n of names) {
    const rec = parsePidFileName(n);
    if (rec) (SPARE_ID.test(rec.id) ? spare : vm).add(String(rec.pid));
  }
  for (const pid of vm) spare.delete(pid);
  return spare;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
