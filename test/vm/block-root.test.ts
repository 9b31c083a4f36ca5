/**
 * The image root on a read-only block device, with a pulled image in real TCG boots:
 * the pull builds the image's erofs once; two VMs of the image share that one file
 * (each QEMU holds it read-only through an fd); the guest mounts it read-only as the
 * overlay's lower layer from the device whose serial is "image", and cannot write it
 * even as root; `image rm` + `image prune` keep it while a VM runs and remove it after.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { closeDefaultRegistryClient, imageBlockPath, imageRootfsIdsInUse, ImageStore, MonocoreHome, pullImage, type PullProgress } from '@monocore/engine';
import { backend, spec, tempDir, testHome } from './vm-fixtures.js';

test('qemu: a pulled image boots from its block image, shared by two VMs, read-only in the guest; prune keeps it while they run', async (t) => {
  const image = process.env.MONOCORE_TEST_IMAGE;
  assert.ok(image, 'MONOCORE_TEST_IMAGE is not set: run `bash scripts/test-services.sh start && . .monocore-test/env.sh` (or npm test)');
  // A home of its own (prune must see only this test's images); the initramfs cache is shared.
  const home = new MonocoreHome(tempDir('blockhome'));
  mkdirSync(home.root, { recursive: true });
  mkdirSync(testHome().kernelDir, { recursive: true });
  symlinkSync(testHome().kernelDir, home.kernelDir);
  t.after(() => closeDefaultRegistryClient());

  const phases: PullProgress['phase'][] = [];
  const pulled = await pullImage(image, { home, onProgress: (p) => void (phases.at(-1) === p.phase || phases.push(p.phase)) });
  const block = imageBlockPath(home, pulled.manifestDigest);
  assert.ok(statSync(block).isFile(), 'the pull built the block image');
  assert.ok(typeof pulled.blockSeconds === 'number');
  assert.deepEqual(phases.slice(-2), ['building', 'done']);
  const sum = (): string => createHash('sha256').update(readFileSync(block)).digest('hex');
  const before = sum();

  const qemu = backend({ home });
  // The guest: its root's lower layer, each block device's serial and read-only flag, then
  // root tries to write the image device (it must fail) and waits to be killed.
  const script = [
    "awk '$2==\"/\" {print $1, $3}' /proc/mounts",
    'for d in /sys/block/vd*; do echo "dev $(cat $d/serial) ro=$(cat $d/ro)"; done',
    'img=$(for d in /sys/block/vd*; do [ "$(cat $d/serial)" = image ] && basename $d; done)',
    'dd if=/dev/zero of=/dev/$img bs=4096 count=1 conv=notrunc 2>/dev/null && echo wrote-image || echo image-write-refused',
    'echo ready; sleep 60',
  ].join('; ');
  const a = spec('blk-a', { rootfs: pulled.rootfs, command: '/bin/sh', args: ['-c', script] });
  const b = spec('blk-b', { rootfs: pulled.rootfs, command: '/bin/sh', args: ['-c', script] });
  const [ha, hb] = await Promise.all([qemu.start(a), qemu.start(b)]);
  try {
    await Promise.all([a.stdout.until(/ready\n/), b.stdout.until(/ready\n/)]);
    for (const s of [a, b]) {
      assert.equal(s.stdout.text, 'overlay overlay\ndev image ro=1\ndev upper ro=0\ndev monocore-lane ro=0\nimage-write-refused\nready\n', `${s.id}: ${s.stderr.text}`);
    }
    // Both QEMUs hold the one block image of the store, read-only, through an fd.
    for (const vm of [ha, hb]) {
      const held = readdirSync(`/proc/${vm.pid}/fd`).filter((fd) => readlinkSync(`/proc/${vm.pid}/fd/${fd}`) === block);
      assert.ok(held.length >= 1, `QEMU ${vm.pid} holds ${block}`);
      for (const fd of held) {
        const flags = Number.parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/${vm.pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '', 8);
        assert.equal(flags & 3, 0, `fd ${fd}: O_RDONLY`);
      }
    }
    assert.equal(readdirSync(join(a.stateDir)).includes('rootfs.erofs'), false, 'no per-VM copy for a store image');
    // The image is in use: removed from the records, prune keeps it (and its block image).
    assert.ok((await imageRootfsIdsInUse(home)).has(pulled.manifestDigest));
    const store = new ImageStore(home);
    assert.equal((await store.remove(pulled.reference)).length, 1);
    const busy = await store.prune();
    assert.deepEqual(busy.keptInUse, [pulled.manifestDigest]);
    assert.ok(existsSync(block));
  } finally {
    await Promise.all([ha.kill(), hb.kill()]);
  }
  assert.equal(sum(), before, 'the block image is unchanged');
  const pruned = await new ImageStore(home).prune();
  assert.deepEqual(pruned.removedRootfs, [pulled.manifestDigest]);
  assert.equal(existsSync(block), false, 'removed with the image');
  for (const s of [a, b]) rmSync(s.stateDir, { recursive: true, force: true });
});
