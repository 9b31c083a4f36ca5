// Extended attributes in layers: file capabilities and user.* survive unpacking —
// binary values included, which node-tar's own PAX reader would cut at the first NUL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { applyLayer, canChown } from '@monocore/engine';
import { gzip, tarArchive } from './tar-writer.js';
import { removeTempDirs, tempDir } from './tree.js';

const require = createRequire(import.meta.url);
const koffi = require('koffi') as { load(lib: string): { func(sig: string): (...a: unknown[]) => number } };
const libc = koffi.load('libc.so.6');
const lgetxattr = libc.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)');
const lsetxattr = libc.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)');

function getXattr(path: string, name: string): Buffer | undefined {
  const buf = Buffer.alloc(4096);
  const n = lgetxattr(path, name, buf, buf.length);
  return n < 0 ? undefined : buf.subarray(0, n);
}

// VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_RAW (13): 20 bytes, mostly NULs,
// and one byte is '\n' (0x0a) to make sure a line-based reader would break it.
const CAP_NET_RAW_EP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

test.after(removeTempDirs);

test('xattrs: security.capability (binary) and user.* are applied; trusted.* is not; small and large files, directories', async () => {
  const dir = tempDir('xattr');
  const big = Buffer.alloc(3 << 20, 7); // > 1 MiB: the streamed (asynchronous) write path
  const layer = join(dir, 'layer.tar.gz');
  writeFileSync(layer, gzip(tarArchive([
    { name: 'bin/', type: 'dir' },
    { name: 'bin/ping', data: 'ELF', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': CAP_NET_RAW_EP, 'SCHILY.xattr.user.note': 'hi there', 'SCHILY.xattr.trusted.secret': 'no' } },
    { name: 'big.bin', data: big, pax: { 'SCHILY.xattr.user.big': Buffer.from([0, 1, 2, 0, 3]) } },
    { name: 'data/', type: 'dir', pax: { 'SCHILY.xattr.user.dirnote': 'a directory' } },
    { name: 'lib.txt', data: 'x', pax: { [`LIBARCHIVE.xattr.${encodeURIComponent('user.with space')}`]: Buffer.from('from bsdtar').toString('base64') } },
    { name: 'plain', data: 'no attributes here' },
  ])));
  const root = join(dir, 'root');
  const stats = await applyLayer(layer, root, { layer: 'xattrs' });
  if (canChown()) assert.deepEqual(getXattr(join(root, 'bin/ping'), 'security.capability'), CAP_NET_RAW_EP);
  else assert.equal(getXattr(join(root, 'bin/ping'), 'security.capability'), undefined, 'file capabilities need root, like chown');
  assert.equal(getXattr(join(root, 'bin/ping'), 'user.note')?.toString(), 'hi there');
  assert.equal(getXattr(join(root, 'bin/ping'), 'trusted.secret'), undefined, 'trusted.* is the host\'s business');
  assert.deepEqual(getXattr(join(root, 'big.bin'), 'user.big'), Buffer.from([0, 1, 2, 0, 3]));
  assert.equal(getXattr(join(root, 'data'), 'user.dirnote')?.toString(), 'a directory');
  assert.equal(getXattr(join(root, 'lib.txt'), 'user.with space')?.toString(), 'from bsdtar');
  assert.equal(getXattr(join(root, 'plain'), 'user.note'), undefined, 'attributes do not leak to the next entry');
  assert.equal(stats.xattrs, canChown() ? 5 : 4);
});

test('xattrs: a layer written by GNU tar --xattrs keeps its file capability and user attributes', async () => {
  const dir = tempDir('gnutar-xattr');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'usr/bin'), { recursive: true });
  writeFileSync(join(src, 'usr/bin/ping'), 'ELF');
  assert.equal(lsetxattr(join(src, 'usr/bin/ping'), 'user.origin', Buffer.from('gnu tar'), 7, 0), 0);
  if (canChown()) assert.equal(lsetxattr(join(src, 'usr/bin/ping'), 'security.capability', CAP_NET_RAW_EP, CAP_NET_RAW_EP.length, 0), 0);
  const layer = join(dir, 'layer.tar');
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-C', src, '-cf', layer, 'usr']);
  const root = join(dir, 'root');
  await applyLayer(layer, root, { layer: 'gnu-tar' });
  assert.equal(getXattr(join(root, 'usr/bin/ping'), 'user.origin')?.toString(), 'gnu tar');
  if (canChown()) assert.deepEqual(getXattr(join(root, 'usr/bin/ping'), 'security.capability'), CAP_NET_RAW_EP);
});
