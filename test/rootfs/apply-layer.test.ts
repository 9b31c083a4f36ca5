// OCI layer semantics of applyLayer on real files, with layers crafted byte by
// byte (tar-writer.ts): whiteouts, opaque dirs, links, modes, owners, mtimes,
// replacement rules, long names, devices.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer, UnpackSession, isMonocoreError } from '@monocore/engine';
import { gnuLongName, tarArchive, type TarEntry } from './tar-writer.js';
import { describeTree, removeTempDirs, tempDir } from './tree.js';

after(removeTempDirs);

const OCI_TAR = 'application/vnd.oci.image.layer.v1.tar';

async function apply(root: string, entries: (TarEntry | Buffer)[], opts: { session?: UnpackSession; layer?: string; chown?: boolean } = {}): Promise<void> {
  const file = join(root, '..', `layer-${Math.random().toString(16).slice(2)}.tar`);
  writeFileSync(file, tarArchive(entries));
  await applyLayer(file, root, { mediaType: OCI_TAR, layer: opts.layer ?? 'sha256:test', ...opts });
}

function fresh(name: string): string {
  const base = tempDir(name);
  return join(base, 'rootfs');
}

test('regular files, directories, empty directories, modes and mtimes', async () => {
  const root = fresh('basic');
  await apply(root, [
    { name: './', type: 'dir', mode: 0o755, mtime: 1_500_000_000 },
    { name: 'etc/', type: 'dir', mode: 0o755, mtime: 1_500_000_001 },
    { name: 'etc/hostname', data: 'box\n', mode: 0o644, mtime: 1_500_000_002 },
    { name: 'empty/', type: 'dir', mode: 0o700, mtime: 1_500_000_003 },
    { name: 'bin/', type: 'dir', mode: 0o755 },
    { name: 'bin/su', data: 'ELF', mode: 0o4755, mtime: 1_500_000_004 },
    { name: 'bin/wall', data: 'ELF', mode: 0o2755 },
    { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: 1_500_000_005 },
    // Filled after being declared read-only: must still work, mode applied at the end.
    { name: 'ro/', type: 'dir', mode: 0o555, mtime: 1_500_000_006 },
    { name: 'ro/inner', data: 'x', mode: 0o444, mtime: 1_500_000_007 },
    { name: 'ro/sub/', type: 'dir', mode: 0o500 },
    { name: 'ro/sub/deep', data: 'y', mode: 0o400 },
    // No parent entry: created implicitly.
    { name: 'implicit/a/b.txt', data: 'b', mode: 0o600 },
    { name: 'big.bin', data: Buffer.alloc(3 * 1024 * 1024 + 7, 0xab), mode: 0o640, mtime: 1_500_000_008 },
  ]);
  const t = describeTree(root);
  assert.equal(t['.']?.mode, 0o755);
  assert.equal(t['.']?.mtime, 1_500_000_000);
  assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'box\n');
  assert.deepEqual([t['etc']?.mtime, t['etc/hostname']?.mtime], [1_500_000_001, 1_500_000_002]);
  assert.deepEqual([t['empty']?.type, t['empty']?.mode, t['empty']?.mtime], ['dir', 0o700, 1_500_000_003]);
  assert.equal(t['bin/su']?.mode, 0o4755, 'setuid kept');
  assert.equal(t['bin/wall']?.mode, 0o2755, 'setgid kept');
  assert.deepEqual([t['tmp']?.mode, t['tmp']?.mtime], [0o1777, 1_500_000_005], 'sticky kept');
  assert.deepEqual([t['ro']?.mode, t['ro']?.mtime], [0o555, 1_500_000_006]);
  assert.deepEqual([t['ro/inner']?.mode, t['ro/inner']?.mtime], [0o444, 1_500_000_007]);
  assert.equal(t['ro/sub']?.mode, 0o500);
  assert.equal(readFileSync(join(root, 'ro/sub/deep'), 'utf8'), 'y');
  assert.equal(t['implicit/a']?.mode, 0o755);
  assert.equal(readFileSync(join(root, 'implicit/a/b.txt'), 'utf8'), 'b');
  assert.equal(t['big.bin']?.size, 3 * 1024 * 1024 + 7);
  assert.equal(readFileSync(join(root, 'big.bin')).every((b) => b === 0xab), true);
  assert.deepEqual([t['big.bin']?.mode, t['big.bin']?.mtime], [0o640, 1_500_000_008]);
});

test('implicit parent directories are 0755 root:root whatever the umask', async () => {
  const root = fresh('umask');
  const old = process.umask(0o077);
  try {
    await apply(root, [{ name: 'a/b/c/file', data: 'x', mode: 0o644 }]);
  } finally {
    process.umask(old);
  }
  const t = describeTree(root);
  for (const d of ['a', 'a/b', 'a/b/c']) assert.deepEqual([t[d]?.mode, t[d]?.uid, t[d]?.gid], [0o755, 0, 0], d);
  assert.equal(t['a/b/c/file']?.mode, 0o644);
});

test('ownership: applied with lchown as root (setuid survives chown), recorded when chown is off', async () => {
  assert.equal(process.getuid?.(), 0, 'this test must run as root (CI runs as root) to check real ownership');
  const entries: TarEntry[] = [
    { name: 'home/', type: 'dir', uid: 1000, gid: 1001, mode: 0o750 },
    { name: 'home/app', data: 'x', uid: 1000, gid: 1001, mode: 0o4750 },
    { name: 'home/link', type: 'symlink', linkname: 'app', uid: 1002, gid: 1003 },
    { name: 'rootfile', data: 'r', uid: 0, gid: 0 },
  ];
  const root = fresh('owner-root');
  await apply(root, entries);
  const t = describeTree(root);
  assert.deepEqual([t['home']?.uid, t['home']?.gid, t['home']?.mode], [1000, 1001, 0o750]);
  assert.deepEqual([t['home/app']?.uid, t['home/app']?.gid, t['home/app']?.mode], [1000, 1001, 0o4750]);
  assert.deepEqual([t['home/link']?.uid, t['home/link']?.gid], [1002, 1003], 'symlink owner via lchown');

  const root2 = fresh('owner-recorded');
  const session = new UnpackSession(root2, { chown: false });
  await apply(root2, entries, { session });
  // A later layer gives one path back to root: its record must go.
  await apply(root2, [{ name: 'home/link', type: 'symlink', linkname: 'app', uid: 0, gid: 0 }], { session });
  await session.finish();
  const rec = session.record('sha256:' + 'a'.repeat(64));
  assert.equal(rec.ownershipRecorded, true);
  assert.deepEqual(rec.owners, [
    { path: 'home', uid: 1000, gid: 1001 },
    { path: 'home/app', uid: 1000, gid: 1001 },
  ]);
  const t2 = describeTree(root2);
  assert.equal(t2['home/app']?.uid, 0, 'not chowned when chown is off');
  assert.equal(t2['home/app']?.mode, 0o4750, 'mode still applied');
});

test('symlinks are stored as-is: absolute, relative, dangling; never followed when replaced', async () => {
  const root = fresh('symlinks');
  await apply(root, [
    { name: 'bin/', type: 'dir' },
    { name: 'bin/busybox', data: 'bb', mode: 0o755 },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox', mtime: 1_400_000_000 },
    { name: 'abs', type: 'symlink', linkname: '/bin/busybox' },
    { name: 'dangling', type: 'symlink', linkname: '/nonexistent/x' },
    { name: 'up', type: 'symlink', linkname: '../../../../etc/passwd' },
  ]);
  assert.equal(readlinkSync(join(root, 'bin/sh')), 'busybox');
  assert.equal(lstatSync(join(root, 'bin/sh')).mtimeMs, 1_400_000_000_000, 'symlink mtime via lutimes');
  assert.equal(readlinkSync(join(root, 'abs')), '/bin/busybox');
  assert.equal(readlinkSync(join(root, 'dangling')), '/nonexistent/x');
  assert.equal(readlinkSync(join(root, 'up')), '../../../../etc/passwd');
  // A later file entry at a symlink's path replaces the link, it does not write through it.
  await apply(root, [{ name: 'abs', data: 'replaced' }]);
  assert.equal(lstatSync(join(root, 'abs')).isFile(), true);
  assert.equal(readFileSync(join(root, 'bin/busybox'), 'utf8'), 'bb', 'link target untouched');
});

test('hardlinks share the inode of a file already in the rootfs (same or lower layer)', async () => {
  const root = fresh('hardlinks');
  await apply(root, [
    { name: 'usr/bin/', type: 'dir' },
    { name: 'usr/bin/perl', data: 'perl', mode: 0o755 },
    { name: 'usr/bin/perl5.36', type: 'hardlink', linkname: 'usr/bin/perl' },
    { name: 'sym', type: 'symlink', linkname: 'usr/bin/perl' },
    { name: 'linktolink', type: 'hardlink', linkname: 'sym' },
  ]);
  await apply(root, [{ name: 'lower-link', type: 'hardlink', linkname: './usr/bin/perl' }]);
  const a = statSync(join(root, 'usr/bin/perl'));
  assert.equal(statSync(join(root, 'usr/bin/perl5.36')).ino, a.ino);
  assert.equal(statSync(join(root, 'lower-link')).ino, a.ino);
  assert.equal(a.nlink, 3);
  assert.equal(lstatSync(join(root, 'linktolink')).isSymbolicLink(), true, 'a hardlink to a symlink is the symlink, not its target');
  await assert.rejects(apply(root, [{ name: 'x', type: 'hardlink', linkname: 'missing' }]), (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /x.*missing.*does not exist/.test(e.message));
  await assert.rejects(apply(root, [{ name: 'x', type: 'hardlink', linkname: 'usr/bin' }]), (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /is a directory/.test(e.message));
});

test('whiteouts delete lower entries; a whiteout never hides an entry of its own layer', async () => {
  const root = fresh('whiteouts');
  await apply(root, [
    { name: 'etc/', type: 'dir' },
    { name: 'etc/a', data: 'a' },
    { name: 'etc/b', data: 'b' },
    { name: 'var/lib/dpkg/', type: 'dir' },
    { name: 'var/lib/dpkg/status', data: 's' },
    { name: 'lnk', type: 'symlink', linkname: 'etc' },
  ]);
  await apply(root, [
    { name: 'etc/.wh.a', data: '' },
    { name: 'var/lib/.wh.dpkg', data: '' },
    { name: '.wh.lnk', data: '' },
    { name: 'etc/new', data: 'n' },
    { name: 'etc/.wh.new', data: '' }, // same layer: no effect
    { name: '.wh.never-existed', data: '' },
    { name: 'gone/.wh.x', data: '' }, // parent missing: nothing to do
  ]);
  assert.equal(existsSync(join(root, 'etc/a')), false);
  assert.equal(readFileSync(join(root, 'etc/b'), 'utf8'), 'b');
  assert.equal(existsSync(join(root, 'var/lib/dpkg')), false, 'directory whiteout removes the tree');
  assert.equal(existsSync(join(root, 'var/lib')), true);
  assert.equal(existsSync(join(root, 'lnk')), false, 'whiteout removes the symlink itself');
  assert.equal(readFileSync(join(root, 'etc/new'), 'utf8'), 'n');
  assert.equal(existsSync(join(root, 'etc/.wh.new')), false, 'whiteout files are never written');
  assert.equal(existsSync(join(root, 'gone')), false, 'a whiteout does not create its directory');
});

test('opaque directories clear lower contents, keep this layer\'s (marker first or last)', async () => {
  for (const markerFirst of [true, false]) {
    const root = fresh(`opaque-${markerFirst}`);
    await apply(root, [
      { name: 'app/', type: 'dir' },
      { name: 'app/old', data: 'old' },
      { name: 'app/keepdir/', type: 'dir' },
      { name: 'app/keepdir/oldchild', data: 'old' },
      { name: 'app/olddir/', type: 'dir' },
      { name: 'app/olddir/f', data: 'f' },
      { name: 'other', data: 'untouched' },
    ]);
    const marker: TarEntry = { name: 'app/.wh..wh..opq', data: '' };
    const upper: TarEntry[] = [
      { name: 'app/', type: 'dir', mode: 0o750 },
      { name: 'app/new', data: 'new' },
      // No entry for app/keepdir/ itself: its parent-of-an-entry role still keeps it.
      { name: 'app/keepdir/newchild', data: 'new' },
    ];
    await apply(root, markerFirst ? [upper[0] as TarEntry, marker, ...upper.slice(1)] : [...upper, marker]);
    const t = describeTree(root);
    assert.deepEqual(Object.keys(t).filter((k) => k.startsWith('app')).sort(), ['app', 'app/keepdir', 'app/keepdir/newchild', 'app/new'], `marker ${markerFirst ? 'first' : 'last'}`);
    assert.equal(t['app']?.mode, 0o750);
    assert.equal(readFileSync(join(root, 'other'), 'utf8'), 'untouched');
  }
});

test('a later entry replaces an earlier one unless both are directories', async () => {
  const root = fresh('replace');
  await apply(root, [
    { name: 'a/', type: 'dir', mode: 0o700 },
    { name: 'a/f', data: 'keep' },
    { name: 'b/', type: 'dir' },
    { name: 'b/f', data: 'gone' },
    { name: 'c', data: 'file' },
    { name: 'd', type: 'symlink', linkname: 'a' },
  ]);
  await apply(root, [
    { name: 'a/', type: 'dir', mode: 0o711, mtime: 1_300_000_000 }, // dir over dir: merged, metadata updated
    { name: 'b', data: 'now a file' }, // file over dir
    { name: 'c/', type: 'dir' }, // dir over file
    { name: 'c/x', data: 'x' },
    { name: 'd/', type: 'dir' }, // dir over symlink: the link is replaced, not followed
    { name: 'd/y', data: 'y' },
  ]);
  const t = describeTree(root);
  assert.equal(readFileSync(join(root, 'a/f'), 'utf8'), 'keep');
  assert.deepEqual([t['a']?.mode, t['a']?.mtime], [0o711, 1_300_000_000]);
  assert.equal(readFileSync(join(root, 'b'), 'utf8'), 'now a file');
  assert.equal(t['c']?.type, 'dir');
  assert.equal(t['d']?.type, 'dir');
  assert.equal(existsSync(join(root, 'a/y')), false, 'nothing written through the old symlink');
});

test('PAX and GNU long names, PAX owners and times', async () => {
  const root = fresh('longnames');
  const long = 'deep/' + 'x'.repeat(120) + '/' + 'y'.repeat(130) + '.txt';
  const longLink = 'l/' + 'z'.repeat(150);
  await apply(root, [
    { name: 'ignored-short-name', data: 'pax', pax: { path: long, uid: '4000000', gid: '12', mtime: '1234567890.5' } },
    gnuLongName({ name: 'gnu/' + 'g'.repeat(200), data: 'gnu' }),
    { name: 'short-link', type: 'symlink', linkname: 'ignored', pax: { path: longLink, linkpath: '/' + 'q'.repeat(140) } },
  ]);
  assert.equal(readFileSync(join(root, long), 'utf8'), 'pax');
  const st = lstatSync(join(root, long));
  assert.deepEqual([st.uid, st.gid, Math.floor(st.mtimeMs / 1000)], [4_000_000, 12, 1_234_567_890]);
  assert.equal(readFileSync(join(root, 'gnu/' + 'g'.repeat(200)), 'utf8'), 'gnu');
  assert.equal(readlinkSync(join(root, longLink)), '/' + 'q'.repeat(140));
});

test('device nodes and FIFOs are recorded, never created on the host', async () => {
  const root = fresh('devices');
  const session = new UnpackSession(root);
  await apply(root, [
    { name: 'dev/', type: 'dir' },
    { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
    { name: 'dev/mem', type: 'char', devmajor: 1, devminor: 1, mode: 0o640 },
    { name: 'dev/null', data: 'a file in a lower layer' },
    { name: 'run/initctl', type: 'fifo', mode: 0o600 },
  ], { session });
  // An upper layer replaces the lower file with a device: the file goes, the device is recorded.
  await apply(root, [{ name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }, { name: 'dev/.wh.mem', data: '' }], { session });
  await session.finish();
  for (const p of ['dev/sda', 'dev/mem', 'dev/null', 'run/initctl']) assert.equal(existsSync(join(root, p)), false, `${p} not created`);
  assert.deepEqual(session.record('sha256:' + 'b'.repeat(64)).devices, [
    { path: 'dev/null', type: 'char', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
    { path: 'dev/sda', type: 'block', major: 8, minor: 0, mode: 0o660, uid: 0, gid: 6 },
    { path: 'run/initctl', type: 'fifo', major: 0, minor: 0, mode: 0o600, uid: 0, gid: 0 },
  ]);
});

test('empty layers (only zero blocks) apply; garbage and unsupported entries fail naming the layer', async () => {
  const root = fresh('empty');
  await applyLayer(Readable.from([Buffer.alloc(1024)]), root, { layer: 'sha256:empty' });
  await applyLayer(Readable.from([Buffer.alloc(10240)]), root, { layer: 'sha256:empty2' });
  assert.deepEqual(Object.keys(describeTree(root)), ['.']);
  await assert.rejects(applyLayer(Readable.from([Buffer.from('this is not a tar archive at all'.repeat(40))]), root, { layer: 'sha256:garbage' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /sha256:garbage/.test(e.message));
  await assert.rejects(apply(root, [{ name: 'weird', type: 'raw', typeflag: 'S', data: 'sparse' }], { layer: 'sha256:sparse' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /sha256:sparse/.test(e.message) && /weird/.test(e.message));
  // A truncated archive (cut in the middle of a file body).
  const whole = tarArchive([{ name: 'f', data: Buffer.alloc(4096, 1) }]);
  await assert.rejects(applyLayer(Readable.from([whole.subarray(0, 2048)]), root, { layer: 'sha256:cut' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /sha256:cut/.test(e.message));
  // A name component longer than the host allows (255 bytes).
  await assert.rejects(apply(root, [{ name: 'n', data: 'x', pax: { path: 'd/' + 'n'.repeat(300) } }], { layer: 'sha256:long' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /sha256:long entry "d\/n{300}"/.test(e.message) && e.details.errno === 'ENAMETOOLONG');
  // A corrupted header checksum.
  const bad = tarArchive([{ name: 'ok', data: 'x' }, { name: 'broken', data: 'y' }]);
  bad[1024 + 150] = 0x37;
  await assert.rejects(applyLayer(Readable.from([bad]), root, { layer: 'sha256:cksum' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /sha256:cksum/.test(e.message));
  rmSync(join(root, '..'), { recursive: true, force: true });
});

test('the unpack lets the event loop turn within one chunk: a chunk of 1,000 small files is not applied in one go', async (t) => {
  const root = fresh('turns');
  const n = 1000;
  const entries: TarEntry[] = [{ name: 'd/', type: 'dir', mode: 0o755 }];
  for (let i = 0; i < n; i++) entries.push({ name: `d/f${i}`, data: 'x', mode: 0o644 });
  const tar = tarArchive(entries); // ~1 MiB: one chunk, as the decompressor hands them over
  const first = join(root, 'd/f0');
  const last = join(root, `d/f${n - 1}`);
  // Every turn of the event loop (timers, socket reads: a lease renewal's reply) is seen here.
  let turns = 0;
  let midChunk = 0;
  let maxLagMs = 0;
  let prev = performance.now();
  let stop = false;
  const loop = (): void => {
    if (stop) return;
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - prev);
    prev = now;
    turns++;
    if (existsSync(first) && !existsSync(last)) midChunk++;
    setImmediate(loop);
  };
  setImmediate(loop);
  const t0 = performance.now();
  await applyLayer(Readable.from([tar]), root, { layer: 'sha256:turns', compression: 'none' });
  const tookMs = performance.now() - t0;
  stop = true;
  t.diagnostic(`${n} files in one ${tar.length}-byte chunk: ${tookMs.toFixed(0)} ms, ${turns} turns, ${midChunk} in mid-chunk, worst lag ${maxLagMs.toFixed(1)} ms`);
  assert.equal(readFileSync(last, 'utf8'), 'x', 'the whole layer was applied');
  assert.ok(midChunk > 0, 'the event loop turned while the chunk was half applied');
  rmSync(join(root, '..'), { recursive: true, force: true });
});
