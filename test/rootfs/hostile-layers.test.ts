// Hostile layers (docs/THREATS.md, "Untrusted layers"): every escape kind, each
// either rejected (MC_ROOTFS_PATH_ESCAPE naming layer and entry) or contained
// (it lands inside the rootfs). After each attack we prove that the sentinel
// directory beside the rootfs is byte-for-byte, inode-for-inode unchanged, and
// that no rootfs file holds the sentinel's secret (nothing was read from outside).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { applyLayer, ensureImageRootfs, MonocoreHome, removeImageRootfs, UnpackSession, isMonocoreError, type MonocoreError } from '@monocore/engine';
import { gnuLongName, tarArchive, type TarEntry } from './tar-writer.js';
import { describeTree, removeTempDirs, fileContents, tempDir } from './tree.js';

after(removeTempDirs);

const OCI_TAR = 'application/vnd.oci.image.layer.v1.tar';

interface Arena {
  base: string;
  root: string;
  outside: string;
  secret: string;
  check(): void;
}

/** A rootfs next to a sentinel directory full of things an attacker would want. */
function arena(name: string): Arena {
  const base = tempDir(`hostile-${name}`);
  const root = join(base, 'rootfs');
  const outside = join(base, 'outside');
  const secret = `TOP-SECRET-${randomBytes(8).toString('hex')}`;
  mkdirSync(join(outside, 'etc'), { recursive: true });
  mkdirSync(root);
  writeFileSync(join(outside, 'secret'), secret, { mode: 0o600 });
  writeFileSync(join(outside, 'etc', 'passwd'), `root:x:0:0:${secret}:/root:/bin/sh\n`, { mode: 0o644 });
  chmodSync(join(outside, 'etc'), 0o755);
  const before = describeTree(outside, { ino: true });
  return {
    base, root, outside, secret,
    check() {
      assert.deepEqual(describeTree(outside, { ino: true }), before, 'the sentinel directory outside the rootfs changed');
      assert.equal(statSync(join(outside, 'secret')).nlink, 1, 'a hardlink to the outside secret was created');
      for (const [p, data] of fileContents(root)) {
        assert.equal(data.includes(secret), false, `rootfs file ${p} holds the outside secret: something was read from outside`);
      }
      assert.deepEqual(Object.keys(describeTree(base)).filter((p) => !p.startsWith('rootfs') && !p.startsWith('outside') && !p.startsWith('home') && !p.endsWith('.tar') && p !== '.'), [],
        'something appeared beside the rootfs');
      assert.ok(existsSync(join(base, 'outside', 'secret')));
    },
  };
}

async function apply(a: Arena, entries: (TarEntry | Buffer)[], session?: UnpackSession): Promise<void> {
  const file = join(a.base, `layer-${randomBytes(4).toString('hex')}.tar`);
  writeFileSync(file, tarArchive(entries));
  await applyLayer(file, a.root, { mediaType: OCI_TAR, layer: 'sha256:' + 'e'.repeat(64), ...(session ? { session } : {}) });
}

function escapeError(entry: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(isMonocoreError(e, 'MC_ROOTFS_PATH_ESCAPE'), `expected MC_ROOTFS_PATH_ESCAPE, got ${String((e as Error).message)}`);
    const m = e as MonocoreError;
    assert.match(m.message, new RegExp(`layer sha256:e{64} entry "${entry.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`));
    assert.equal(m.details.entry, entry);
    assert.equal(m.details.layer, 'sha256:' + 'e'.repeat(64));
    return true;
  };
}

test('REJECT: ".." in entry names (plain, nested, PAX, GNU long name)', async () => {
  const a = arena('dotdot');
  for (const name of ['../outside/evil', 'a/../../outside/evil', './../outside/secret', 'x/../../../../../../tmp/evil']) {
    await assert.rejects(apply(a, [{ name: 'ok', data: 'fine' }, { name, data: 'pwned' }]), escapeError(name));
  }
  const pax = '../outside/pax-evil';
  await assert.rejects(apply(a, [{ name: 'innocent', data: 'pwned', pax: { path: pax } }]), escapeError(pax));
  const gnu = '../outside/' + 'g'.repeat(120);
  await assert.rejects(apply(a, [gnuLongName({ name: gnu, data: 'pwned' })]), escapeError(gnu));
  await assert.rejects(apply(a, [{ name: '../outside/evil-dir/', type: 'dir' }]), escapeError('../outside/evil-dir/'));
  await assert.rejects(apply(a, [{ name: '../outside/evil-link', type: 'symlink', linkname: '/' }]), escapeError('../outside/evil-link'));
  a.check();
});

test('CONTAIN: absolute names land inside the rootfs', async () => {
  const a = arena('absolute');
  const target = join(a.outside, 'evil');
  await apply(a, [{ name: target, data: 'contained' }, { name: '/etc/monocore-test-evil', data: 'contained' }]);
  assert.equal(readFileSync(join(a.root, target), 'utf8'), 'contained');
  assert.equal(existsSync(target), false);
  assert.equal(existsSync('/etc/monocore-test-evil'), false, 'host /etc untouched');
  assert.equal(readFileSync(join(a.root, 'etc/monocore-test-evil'), 'utf8'), 'contained');
  a.check();
});

test('CONTAIN: symlink to an outside directory, then entries written through it', async () => {
  const a = arena('symlink-through');
  await apply(a, [
    { name: 'etc', type: 'symlink', linkname: a.outside + '/etc' }, // absolute
    { name: 'etc/passwd', data: 'root::0:0::/:/bin/sh\n' },
    { name: 'up', type: 'symlink', linkname: '../../../../../../../../..' + a.outside }, // relative, climbing
    { name: 'up/secret', data: 'overwrite attempt' },
    { name: 'up/newdir/', type: 'dir', mode: 0o777 },
    { name: 'up/newdir/f', data: 'f' },
    { name: 'up/lnk', type: 'symlink', linkname: '/bin/sh' },
    { name: 'up/hl', type: 'hardlink', linkname: 'etc/passwd' },
  ]);
  // Resolved with the rootfs as "/": both links point at <root>/<outside path>.
  const inside = join(a.root, a.outside);
  assert.equal(readFileSync(join(inside, 'etc/passwd'), 'utf8'), 'root::0:0::/:/bin/sh\n');
  assert.equal(readFileSync(join(inside, 'secret'), 'utf8'), 'overwrite attempt');
  assert.equal(lstatSync(join(inside, 'newdir')).mode & 0o777, 0o777);
  assert.equal(lstatSync(join(inside, 'lnk')).isSymbolicLink(), true);
  assert.equal(statSync(join(inside, 'hl')).ino, statSync(join(inside, 'etc/passwd')).ino);
  a.check();
});

test('CONTAIN: symlink chains and symlinks to files used as directories; REJECT-as-bad: symlink loops', async () => {
  const a = arena('chains');
  await apply(a, [
    { name: 'c1', type: 'symlink', linkname: 'c2' },
    { name: 'c2', type: 'symlink', linkname: '/c3' },
    { name: 'c3', type: 'symlink', linkname: '../..' + a.outside },
    { name: 'c1/chained', data: 'chained' },
    { name: 'tofile', type: 'symlink', linkname: a.outside + '/secret' },
    { name: 'tofile/x', data: 'x' }, // <root>/<outside>/secret does not exist inside: becomes a directory there
  ]);
  assert.equal(readFileSync(join(a.root, a.outside, 'chained'), 'utf8'), 'chained');
  assert.equal(readFileSync(join(a.root, a.outside, 'secret', 'x'), 'utf8'), 'x');
  await assert.rejects(apply(a, [
    { name: 'l1', type: 'symlink', linkname: 'l2' },
    { name: 'l2', type: 'symlink', linkname: 'l1' },
    { name: 'l1/x', data: 'loop' },
  ]), (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /entry "l1\/x"/.test(e.message) && /more than 255 symlinks/.test(e.message));
  a.check();
});

test('CONTAIN: a file entry at a symlink path replaces the symlink, never writes through it', async () => {
  const a = arena('final-symlink');
  await apply(a, [
    { name: 'f', type: 'symlink', linkname: a.outside + '/secret' },
    { name: 'g', type: 'symlink', linkname: '../outside/etc' },
    { name: 'h', type: 'symlink', linkname: '../outside/etc/passwd' },
  ]);
  await apply(a, [
    { name: 'f', data: 'pwned' },
    { name: 'g/', type: 'dir', mode: 0o777 },
    { name: 'h', type: 'hardlink', linkname: 'f' },
  ]);
  assert.equal(readFileSync(join(a.root, 'f'), 'utf8'), 'pwned');
  assert.equal(lstatSync(join(a.root, 'g')).isDirectory(), true);
  a.check();
});

test('REJECT/CONTAIN: hardlinks to host files', async () => {
  const a = arena('hardlinks');
  // Climbing out: rejected.
  await assert.rejects(apply(a, [{ name: 'stolen', type: 'hardlink', linkname: '../outside/secret' }]), (e) => {
    assert.ok(isMonocoreError(e, 'MC_ROOTFS_PATH_ESCAPE'));
    assert.match(e.message, /entry "stolen": hardlink target "\.\.\/outside\/secret" contains a "\.\." component/);
    return true;
  });
  await assert.rejects(apply(a, [{ name: 'stolen', type: 'hardlink', linkname: '../../../../../../etc/shadow' }]), escapeError('stolen'));
  // Absolute: resolved inside the rootfs, where it does not exist.
  await assert.rejects(apply(a, [{ name: 'stolen', type: 'hardlink', linkname: a.outside + '/secret' }]),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /entry "stolen": hardlink target ".*secret" does not exist in the rootfs/.test(e.message));
  await assert.rejects(apply(a, [{ name: 'shadow', type: 'hardlink', linkname: '/etc/shadow' }]),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /does not exist in the rootfs/.test(e.message));
  // Through a symlink pointing outside: still resolved inside.
  await assert.rejects(apply(a, [
    { name: 'via', type: 'symlink', linkname: a.outside },
    { name: 'stolen', type: 'hardlink', linkname: 'via/secret' },
  ]), (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /does not exist in the rootfs/.test(e.message));
  // When the layer plants a decoy at the same path inside, the link gets the decoy.
  await apply(a, [
    { name: a.outside.slice(1) + '/secret', data: 'decoy' },
    { name: 'stolen', type: 'hardlink', linkname: a.outside + '/secret' },
  ]);
  assert.equal(readFileSync(join(a.root, 'stolen'), 'utf8'), 'decoy');
  a.check();
});

test('REJECT/CONTAIN: whiteouts that escape', async () => {
  const a = arena('whiteouts');
  await assert.rejects(apply(a, [{ name: '../outside/.wh.secret', data: '' }]), escapeError('../outside/.wh.secret'));
  await assert.rejects(apply(a, [{ name: 'x/.wh...', data: '' }]), escapeError('x/.wh...'));
  await assert.rejects(apply(a, [{ name: '../.wh.outside', data: '' }]), escapeError('../.wh.outside'));
  // Through a symlink (absolute and relative): contained, deletes only inside.
  await apply(a, [
    { name: 'w', type: 'symlink', linkname: a.outside },
    { name: 'r', type: 'symlink', linkname: '../outside' },
    { name: 'inside-decoy/', type: 'dir' },
  ]);
  mkdirSync(join(a.root, a.outside), { recursive: true });
  writeFileSync(join(a.root, a.outside, 'secret'), 'inside copy');
  await apply(a, [
    { name: 'w/.wh.secret', data: '' },
    { name: 'w/.wh.etc', data: '' },
    { name: 'r/.wh..wh..opq', data: '' },
  ]);
  assert.equal(existsSync(join(a.root, a.outside, 'secret')), false, 'the whiteout hit the inside path');
  a.check();
});

test('CONTAIN: deferred directory metadata never applies through a symlink that replaced the directory', async () => {
  const a = arena('deferred');
  const session = new UnpackSession(a.root);
  await apply(a, [
    { name: 'x/', type: 'dir', mode: 0o777, mtime: 1 },
    { name: 'x', type: 'symlink', linkname: a.outside },
  ], session);
  await apply(a, [
    { name: 'y/', type: 'dir', mode: 0o777, mtime: 1, uid: 4242 },
  ], session);
  await apply(a, [{ name: 'y', type: 'symlink', linkname: '../outside/etc' }], session);
  await session.finish();
  a.check();
});

test('CONTAIN: device nodes are never created, even as root', async () => {
  const a = arena('devices');
  const session = new UnpackSession(a.root);
  await apply(a, [
    { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0, mode: 0o666 },
    { name: 'dev/kmem', type: 'char', devmajor: 1, devminor: 2, mode: 0o666 },
    { name: 'escape', type: 'symlink', linkname: a.outside },
    { name: 'escape/dev-in-outside', type: 'char', devmajor: 1, devminor: 1 },
  ], session);
  await session.finish();
  assert.equal(existsSync(join(a.root, 'dev/sda')), false);
  assert.equal(existsSync(join(a.root, 'dev/kmem')), false);
  const devs = session.record('sha256:' + '0'.repeat(64)).devices.map((d) => d.path);
  assert.deepEqual(devs, ['dev/kmem', 'dev/sda', a.outside.slice(1) + '/dev-in-outside'].sort(), 'recorded at the contained path');
  a.check();
});

test('CONTAIN: deleting a directory (whiteout, replacement, image removal) never follows symlinks inside it', async () => {
  const a = arena('rm-links');
  await apply(a, [
    { name: 'd/', type: 'dir' },
    { name: 'd/to-outside', type: 'symlink', linkname: a.outside },
    { name: 'd/to-root', type: 'symlink', linkname: '/' },
    { name: 'e/', type: 'dir' },
    { name: 'e/to-outside-rel', type: 'symlink', linkname: '../../outside' },
    { name: 'f/', type: 'dir' },
    { name: 'f/x', type: 'symlink', linkname: a.outside + '/etc' },
  ]);
  await apply(a, [
    { name: '.wh.d', data: '' }, // whiteout of a directory
    { name: 'e', data: 'file replaces dir' }, // replacement
    { name: 'f/.wh..wh..opq', data: '' }, // opaque
  ]);
  assert.equal(existsSync(join(a.root, 'd')), false);
  a.check();

  // Whole-image removal: an image holding links to the host is removed without following them.
  const home = new MonocoreHome(join(a.base, 'home'));
  const layer = join(a.base, 'links.tar');
  writeFileSync(layer, tarArchive([
    { name: 'etc', type: 'symlink', linkname: a.outside + '/etc' },
    { name: 'up', type: 'symlink', linkname: '../../../../outside' },
    { name: 'ro/', type: 'dir', mode: 0o555 },
    { name: 'ro/root', type: 'symlink', linkname: '/' },
  ]));
  const imageId = 'sha256:' + 'f'.repeat(64);
  const r = await ensureImageRootfs({ home, imageId, layers: [{ digest: 'sha256:' + 'e'.repeat(64), mediaType: OCI_TAR, size: 0, path: layer }] });
  assert.equal(lstatSync(join(r.rootfs, 'etc')).isSymbolicLink(), true);
  assert.equal(await removeImageRootfs(home, imageId), true);
  assert.equal(existsSync(r.rootfs), false);
  a.check();
});
