// A freshly made ext4 filesystem for one benchmark variant (a loop mount; root only).
//
// Why: on ext4, creating files shortly after many were deleted is several times
// slower (find_inode_bit skips inodes freed in the last minutes: recently_deleted),
// so variants sharing one filesystem pay for each other's deletions. Without root
// or loop devices, or with BENCH_SHARED_DIR=1, it falls back to one directory that
// is emptied between variants (the old way).
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export function freshFsFactory(out) {
  const img = join(out, 'fs.img');
  const mnt = join(out, 'mnt');
  const shared = join(out, 'run');
  const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const canMount = !process.env.BENCH_SHARED_DIR && !process.env.OCI_BENCH_SHARED_DIR && process.getuid?.() === 0 &&
    spawnSync('sh', ['-c', `mkdir -p ${mnt} && truncate -s 1M ${img} && mkfs.ext4 -q -F ${img} && mount -o loop ${img} ${mnt} && umount ${mnt}`], { stdio: 'ignore' }).status === 0;
  // The previous variant's filesystem must be gone before the next is made: monocore's
  // detached `sync -f` (rootfs/sync-filesystem.ts) can hold it busy for a moment after
  // the CLI exits, and a failed umount would leave the next mount stacked over it.
  const unmount = () => {
    const deadline = Date.now() + 60_000;
    while (spawnSync('mountpoint', ['-q', mnt]).status === 0) {
      if (spawnSync('umount', [mnt], { stdio: 'ignore' }).status === 0) continue;
      if (Date.now() > deadline) throw new Error(`cannot unmount ${mnt} (still busy after 60 s)`);
      spawnSync('sleep', ['0.2']);
    }
  };
  return {
    canMount,
    /** Unmounts the previous one and returns the mount point of a new, empty filesystem. */
    fresh() {
      if (!canMount) {
        rmSync(shared, { recursive: true, force: true });
        mkdirSync(shared, { recursive: true });
        return shared;
      }
      unmount();
      rmSync(img, { force: true });
      sh('truncate', ['-s', '8G', img]);
      // No lazy init: no background zeroing thread competing with the variant.
      sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', img]);
      sh('mount', ['-o', 'loop', img, mnt]);
      sh('sync', []);
      return mnt;
    },
    drop() {
      if (canMount) unmount();
      rmSync(canMount ? img : shared, { recursive: true, force: true });
    },
  };
}
