import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMonocoreError } from '../errors/index.js';
import { resolveModuleOrder } from './kernel-modules.js';

function modulesDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mc-mods-'));
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

test('resolveModuleOrder: dependencies first, soft deps via alias (preferring *_generic), builtins skipped', () => {
  const dir = modulesDir({
    'modules.dep': [
      'kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko',
      'kernel/fs/jbd2/jbd2.ko:',
      'kernel/fs/mbcache.ko:',
      'kernel/lib/crc16.ko:',
      'kernel/crypto/crc32c_generic.ko:',
      'kernel/arch/x86/crypto/crc32c-intel.ko:',
      'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko',
      'kernel/net/9p/9pnet.ko:',
      'kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko',
      'kernel/fs/netfs/netfs.ko.xz:',
    ].join('\n'),
    'modules.softdep': '# comment\nsoftdep ext4 pre: crypto-crc32c\n',
    'modules.alias': 'alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n',
    'modules.builtin': 'kernel/drivers/virtio/virtio_mmio.ko\n',
  });
  try {
    const order = resolveModuleOrder(dir, ['virtio_mmio', '9p', 'ext4']);
    const names = order.map((m) => m.name);
    assert.deepEqual(names, ['netfs', 'fscache', '9pnet', '9p', 'crc32c_generic', 'jbd2', 'mbcache', 'crc16', 'ext4']);
    assert.equal(order.find((m) => m.name === 'crc32c_generic')?.optional, true, 'soft dependencies are optional');
    assert.equal(order.find((m) => m.name === 'netfs')?.path, 'kernel/fs/netfs/netfs.ko.xz');
    for (const m of order) {
      const deps = { ext4: ['crc16', 'mbcache', 'jbd2'], '9p': ['9pnet', 'fscache', 'netfs'], fscache: ['netfs'] }[m.name] ?? [];
      for (const d of deps) assert.ok(names.indexOf(d) < names.indexOf(m.name), `${d} before ${m.name}`);
    }
    assert.throws(() => resolveModuleOrder(dir, ['virtio_blk']), (e: unknown) => isMonocoreError(e, 'MC_VM_INITRAMFS_BUILD_FAILED') && /virtio_blk/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('resolveModuleOrder: a kernel without modules.dep asks for depmod', () => {
  const dir = modulesDir({});
  try {
    assert.throws(() => resolveModuleOrder(dir), (e: unknown) => isMonocoreError(e, 'MC_VM_INITRAMFS_BUILD_FAILED') && /depmod/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
