// ensureImageBlock: the image's read-only erofs built once beside its rootfs, with
// what the guest must see (owners, setuid, file capabilities, mtimes, links), one
// build for concurrent processes, nothing half-built ever used, removed with the image.
// The image is checked through the host kernel's own erofs driver (a loop mount, as root).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  applyLayer, BLOCK_IMAGE_FORMAT, ErofsWriter, UnpackSession, ensureImageBlock, ensureImageRootfs, HostLock, imageBlockPath, isMonocoreError, MonocoreHome, removeImageRootfs, storeImageOf,
  type ImageLayerInput,
} from '@monocore/engine';
import { gzip, tarArchive, type TarEntry } from './tar-writer.js';
import { describeTree, removeTempDirs, tempDir } from './tree.js';

after(removeTempDirs);

const CHILD = fileURLToPath(new URL('./unpack-child.js', import.meta.url));
const IMAGE = 'sha256:' + 'b'.repeat(64);
// security.capability = cap_net_raw+ep (VFS_CAP_REVISION_2).
const CAP_NET_RAW_EP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

function layer(dir: string, name: string, entries: TarEntry[]): ImageLayerInput {
  const data = gzip(tarArchive(entries));
  const path = join(dir, name);
  writeFileSync(path, data);
  chmodSync(path, 0o644);
  return { digest: 'sha256:' + Buffer.from(name).toString('hex').padEnd(64, '0').slice(0, 64), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: data.length, path };
}

function image(dir: string): ImageLayerInput[] {
  return [
    layer(dir, 'base', [
      { name: './', type: 'dir', mode: 0o755, mtime: 1_700_000_000 },
      { name: 'bin/', type: 'dir', mode: 0o555 },
      { name: 'bin/su', data: 'su', mode: 0o4755, uid: 0 },
      { name: 'bin/ping', data: 'ping', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': CAP_NET_RAW_EP } },
      { name: 'bin/sh-link', type: 'symlink', linkname: '/bin/su' },
      { name: 'bin/su-hard', type: 'hardlink', linkname: 'bin/su' },
      { name: 'home/app/', type: 'dir', uid: 1000, gid: 1001, mode: 0o700 },
      { name: 'home/app/notes', data: 'n', uid: 1000, gid: 1001, mtime: 1_234_567_890 },
      { name: 'tmp/', type: 'dir', mode: 0o1777 },
      { name: 'old', data: 'old' },
    ]),
    layer(dir, 'top', [{ name: '.wh.old', data: '' }, { name: 'new', data: 'new', uid: 33, gid: 33 }]),
  ];
}

/** Mounts an erofs image read-only through a loop device; returns the mount point and an unmount. */
function mountErofs(file: string): { dir: string; umount: () => void } {
  const dir = mkdtempSync(join(tempDir('mnt'), 'm-'));
  const r = spawnSync('mount', ['-t', 'erofs', '-o', 'loop,ro', file, dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, `mount -t erofs (as root, with loop devices): ${r.stderr}`);
  return { dir, umount: () => void spawnSync('umount', [dir]) };
}

function getcap(path: string): Buffer | undefined {
  // getfattr (attr) is not a dependency: read the raw value with Python's os.getxattr.
  const r = spawnSync('python3', ['-c', 'import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], "security.capability", follow_symlinks=False))', path]);
  return r.status === 0 ? r.stdout : undefined;
}

test('ensureImageBlock builds an erofs of the rootfs once: owners, setuid, capabilities, mtimes and links as unpacked', async () => {
  assert.equal(process.getuid?.(), 0, 'run as root (as CI does): the test loop-mounts the image');
  const dir = tempDir('block');
  const home = new MonocoreHome(join(dir, 'home'));
  const { rootfs } = await ensureImageRootfs({ home, imageId: IMAGE, layers: image(dir) });
  assert.equal(await storeImageOf(home, rootfs), IMAGE);
  assert.equal(await storeImageOf(home, dir), undefined, 'a directory outside the store is not an image');

  const first = await ensureImageBlock({ home, imageId: IMAGE });
  assert.equal(first.path, imageBlockPath(home, IMAGE));
  assert.match(first.path, new RegExp(`/${IMAGE.slice(7)}/block-${BLOCK_IMAGE_FORMAT}/rootfs\\.erofs$`));
  assert.equal(first.fsType, 'erofs');
  assert.ok(typeof first.buildSeconds === 'number', 'the first call built it');
  assert.equal(statSync(first.path).mode & 0o777, 0o644);
  const again = await ensureImageBlock({ home, imageId: IMAGE });
  assert.deepEqual(again, { path: first.path, fsType: 'erofs' }, 'the second call finds it built');

  const m = mountErofs(first.path);
  try {
    const want = describeTree(rootfs);
    const got = describeTree(m.dir);
    assert.deepEqual(got, want, 'same tree: types, modes (setuid, sticky), owners, mtimes, contents, symlink targets');
    assert.equal(statSync(join(m.dir, 'bin/su')).ino, statSync(join(m.dir, 'bin/su-hard')).ino, 'a hardlink stays one inode');
    assert.deepEqual(getcap(join(m.dir, 'bin/ping')), CAP_NET_RAW_EP, 'the file capability is in the image');
    assert.equal(getcap(join(m.dir, 'bin/su')), undefined);
  } finally {
    m.umount();
  }

  // Removed with the image.
  assert.equal(await removeImageRootfs(home, IMAGE), true);
  assert.equal(existsSync(first.path), false);
  await assert.rejects(ensureImageBlock({ home, imageId: IMAGE }), (e) => isMonocoreError(e, 'MC_ROOTFS_INVALID_ARGUMENT') && /no unpacked rootfs/.test(e.message));
  await assert.rejects(ensureImageBlock({ home, imageId: 'latest' }), (e) => isMonocoreError(e, 'MC_ROOTFS_INVALID_ARGUMENT'));
});

test('a block image from a killed build, or committed in an earlier boot and never confirmed on disk, is built again; a confirmed one is kept', async () => {
  const dir = tempDir('block-crash');
  const home = new MonocoreHome(join(dir, 'home'));
  await ensureImageRootfs({ home, imageId: IMAGE, layers: image(dir) });
  const imageDir = join(home.imageRootfsDir, IMAGE.slice(7));
  // What a SIGKILLed build leaves: a temp dir with a half-written image, and one of another format.
  mkdirSync(join(imageDir, '.tmp-block-999-dead'));
  writeFileSync(join(imageDir, '.tmp-block-999-dead', 'rootfs.erofs'), Buffer.alloc(4096));
  mkdirSync(join(imageDir, 'block-erofs-0'));
  const first = await ensureImageBlock({ home, imageId: IMAGE });
  assert.deepEqual(readdirSync(imageDir).filter((n) => n.includes('block')), [`block-${BLOCK_IMAGE_FORMAT}`], 'leftovers removed');

  const blockDir = join(imageDir, `block-${BLOCK_IMAGE_FORMAT}`);
  const [bootId, nonce] = readFileSync(join(blockDir, 'boot-id'), 'utf8').trim().split(' ');
  assert.equal(bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  const marker = (): string => readFileSync(join(blockDir, 'synced'), 'utf8');
  for (let i = 0; i < 200 && marker() === ''; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(marker(), nonce, 'the background sync confirmed this commit');

  // Committed in another boot, confirmed synced: kept.
  writeFileSync(join(blockDir, 'boot-id'), `an-earlier-boot ${nonce}\n`);
  assert.equal((await ensureImageBlock({ home, imageId: IMAGE })).buildSeconds, undefined);
  assert.equal(readFileSync(join(blockDir, 'boot-id'), 'utf8'), `an-earlier-boot ${nonce}\n`, 'the same commit');
  // Never confirmed: the file may hold zeros where the crash lost data; built afresh.
  writeFileSync(join(blockDir, 'synced'), '');
  const rebuilt = await ensureImageBlock({ home, imageId: IMAGE });
  assert.ok(typeof rebuilt.buildSeconds === 'number', 'built again');
  assert.equal(rebuilt.path, first.path);
  assert.notEqual(readFileSync(join(blockDir, 'boot-id'), 'utf8').trim().split(' ')[1], nonce, 'a new commit');
});

test('processes ensuring the same block image at once: one builds, the others wait on the image lock and use it', async () => {
  const dir = tempDir('block-concurrent');
  const home = new MonocoreHome(join(dir, 'home'));
  await ensureImageRootfs({ home, imageId: IMAGE, layers: image(dir) });
  // Hold the image's lock until every child waits: the contention is certain, not timing.
  const held = await HostLock.acquire(join(home.imageRootfsDir, '.locks', `${IMAGE.slice(7)}.lock`));
  let waiting = 0;
  let allWaiting!: () => void;
  const everyoneWaits = new Promise<void>((r) => (allWaiting = r));
  const results = Array.from({ length: 3 }, () => new Promise<{ path: string; buildSeconds?: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify({ action: 'block', home: home.root, imageId: IMAGE, layers: [] })], { stdio: ['ignore', 'pipe', 'inherit'] });
    let result: { path: string; buildSeconds?: number } | undefined;
    createInterface({ input: child.stdout }).on('line', (l) => {
      const msg = JSON.parse(l) as { waiting?: string; result?: { path: string; buildSeconds?: number }; error?: unknown };
      if (msg.waiting && ++waiting === 3) allWaiting();
      if (msg.result) result = msg.result;
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
    });
    child.on('close', () => (result ? resolve(result) : reject(new Error('no result'))));
  }));
  await everyoneWaits;
  await held.release();
  const rs = await Promise.all(results);
  assert.equal(rs.filter((r) => r.buildSeconds !== undefined).length, 1, 'exactly one process built it');
  assert.ok(rs.every((r) => r.path === imageBlockPath(home, IMAGE)));
});

test('in one process, concurrent callers share one build', async () => {
  const dir = tempDir('block-inproc');
  const home = new MonocoreHome(join(dir, 'home'));
  await ensureImageRootfs({ home, imageId: IMAGE, layers: image(dir) });
  const rs = await Promise.all([1, 2, 3].map(() => ensureImageBlock({ home, imageId: IMAGE })));
  assert.ok(rs.every((r) => r === rs[0]), 'the same result object: one build');
  rmSync(dir, { recursive: true, force: true });
});

test('a cold unpack with blockImage writes the erofs in the same pass: whiteouts, opaque dirs, overwrites, hardlinks, big files, xattrs as the tree has them', async () => {
  assert.equal(process.getuid?.(), 0, 'run as root (as CI does): the test loop-mounts the image');
  const dir = tempDir('block-pass');
  const home = new MonocoreHome(join(dir, 'home'));
  const big = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  const many = Array.from({ length: 400 }, (_, i) => ({ name: `many/${'n'.repeat(40)}-${String(i).padStart(4, '0')}`, data: `f${i}` }));
  const layers = [
    ...image(dir),
    layer(dir, 'third', [
      { name: 'etc/', type: 'dir', mode: 0o755, pax: { 'SCHILY.xattr.user.dir': 'd' } },
      { name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n', pax: { 'SCHILY.xattr.user.note': 'hello' } },
      { name: 'etc/gone', data: 'x' },
      { name: 'opaque/', type: 'dir' },
      { name: 'opaque/lower', data: 'lower' },
      { name: 'replaced-by-dir', data: 'file' },
      { name: 'dir-replaced', type: 'dir' },
      { name: 'dir-replaced/inner', data: 'inner' },
      { name: 'link-to-etc', type: 'symlink', linkname: '/etc' },
      { name: 'big.bin', data: big, mode: 0o600, uid: 7, gid: 8 },
      { name: 'empty', data: '' },
      { name: 'hard-old', data: 'old body' },
      { name: 'hard-old-2', type: 'hardlink', linkname: 'hard-old' },
      ...many,
    ]),
    layer(dir, 'fourth', [
      { name: 'etc/.wh.gone', data: '' },
      { name: 'opaque/.wh..wh..opq', data: '' },
      { name: 'opaque/upper', data: 'upper' },
      { name: 'replaced-by-dir/', type: 'dir', mode: 0o750 },
      { name: 'replaced-by-dir/x', data: 'x' },
      { name: 'dir-replaced', data: 'now a file' },
      { name: 'link-to-etc/hosts', data: '127.0.0.1 localhost\n' },
      { name: 'hard-old', data: 'new body, longer' },
      { name: 'big-hard', type: 'hardlink', linkname: 'big.bin' },
      { name: 'many/.wh.' + 'n'.repeat(40) + '-0007', data: '' },
    ]),
  ];
  const { rootfs, blockSeconds } = await ensureImageRootfs({ home, imageId: IMAGE, layers, blockImage: true });
  assert.ok(typeof blockSeconds === 'number', 'the block image was written with the unpack');
  const imageDir = join(rootfs, '..');
  assert.deepEqual(readdirSync(join(imageDir, `block-${BLOCK_IMAGE_FORMAT}`)).sort(), ['boot-id', 'rootfs.erofs', 'synced']);
  const block = await ensureImageBlock({ home, imageId: IMAGE });
  assert.deepEqual(block, { path: imageBlockPath(home, IMAGE), fsType: 'erofs' }, 'ensureImageBlock finds it built, builds nothing');
  assert.equal(statSync(block.path).mode & 0o777, 0o644);
  assert.equal(spawnSync('fsck.erofs', [block.path]).status, 0, 'fsck.erofs accepts it');

  const m = mountErofs(block.path);
  try {
    const want = describeTree(rootfs);
    assert.ok(want['opaque/upper'] && !want['opaque/lower'] && !want['etc/gone'] && want['etc/hosts'] && want['replaced-by-dir/x'] && want['dir-replaced']?.type === 'file');
    assert.equal(want['many/' + 'n'.repeat(40) + '-0007'], undefined);
    assert.deepEqual(describeTree(m.dir), want, 'same tree: types, modes, owners, mtimes, contents, symlink targets');
    const ino = (p: string): number => statSync(join(m.dir, p)).ino;
    assert.equal(ino('bin/su'), ino('bin/su-hard'), 'a hardlink stays one inode');
    assert.equal(ino('big.bin'), ino('big-hard'), 'a hardlink made in a later layer too');
    assert.equal(statSync(join(m.dir, 'big.bin')).nlink, 2);
    assert.notEqual(ino('hard-old'), ino('hard-old-2'), 'an overwritten file is a new inode; its old link keeps the old body');
    assert.equal(readFileSync(join(m.dir, 'hard-old-2'), 'utf8'), 'old body');
    assert.equal(readFileSync(join(m.dir, 'hard-old'), 'utf8'), 'new body, longer');
    assert.deepEqual(readFileSync(join(m.dir, 'big.bin')), big);
    assert.deepEqual(getcap(join(m.dir, 'bin/ping')), CAP_NET_RAW_EP, 'the file capability is in the image');
    assert.equal(getcap(join(m.dir, 'bin/su')), undefined);
    assert.equal(getxattr(join(m.dir, 'etc/passwd'), 'user.note'), 'hello');
    assert.equal(getxattr(join(m.dir, 'etc'), 'user.dir'), 'd');
    assert.equal(readdirSync(join(m.dir, 'many')).length, 399, 'a directory over several blocks');
  } finally {
    m.umount();
  }
});

test('a failed unpack with blockImage leaves no rootfs, no block image and no temp dir', async () => {
  const dir = tempDir('block-fail');
  const home = new MonocoreHome(join(dir, 'home'));
  const layers = [...image(dir), layer(dir, 'bad', [{ name: 'ok', data: 'fine' }, { name: '../escape', data: 'x' }])];
  await assert.rejects(ensureImageRootfs({ home, imageId: IMAGE, layers, blockImage: true }), (e) => isMonocoreError(e, 'MC_ROOTFS_PATH_ESCAPE') && /"\.\.\/escape"/.test(e.message));
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n !== '.locks'), []);
});

function getxattr(path: string, name: string): string | undefined {
  const r = spawnSync('python3', ['-c', 'import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False))', path, name]);
  return r.status === 0 ? r.stdout.toString() : undefined;
}

test('the erofs writer takes every body from the unpack (none read back from the tree), and one that was not recorded is copied from the tree', async () => {
  const dir = tempDir('block-writer');
  const root = join(dir, 'root');
  mkdirSync(root);
  const session = new UnpackSession(root, { freshTree: true });
  const writer = new ErofsWriter(join(dir, 'a.erofs'));
  for (const l of image(dir)) await applyLayer(l.path, root, { session, blockImage: writer });
  await session.finish();
  const stats = await writer.finish(root);
  assert.equal(stats.copiedFiles, 0);
  // A file the writer never saw (written behind its back) is read from the tree.
  writeFileSync(join(root, 'late'), 'late body');
  const again = new ErofsWriter(join(dir, 'b.erofs'));
  assert.equal((await again.finish(root)).copiedFiles, 5, 'every regular inode copied (su + su-hard is one)');
  if (process.getuid?.() !== 0) return;
  const m = mountErofs(join(dir, 'b.erofs'));
  try {
    assert.deepEqual(describeTree(m.dir), describeTree(root));
  } finally {
    m.umount();
  }
});

test('the erofs writer lets the event loop turn while it walks the tree and lays out its nodes', async (t) => {
  const dir = tempDir('block-turns');
  const root = join(dir, 'root');
  // 4,000 files the writer never saw: each is lstat'ed by the walk and read back from the tree.
  for (let d = 0; d < 40; d++) {
    mkdirSync(join(root, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(root, `d${d}`, `f${f}`), 'x');
  }
  const writer = new ErofsWriter(join(dir, 'turns.erofs'));
  let turns = 0;
  let stop = false;
  const loop = (): void => {
    if (stop) return;
    turns++;
    setImmediate(loop);
  };
  // With MONOCORE_EROFS_TIMING the writer names each phase on stderr as it ends: 'pending'
  // (recorded bodies flushed) comes right before the walk, 'inodes' after the nodes are laid out.
  const marks = new Map<string, number>();
  const write = process.stderr.write.bind(process.stderr);
  process.env.MONOCORE_EROFS_TIMING = '1';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    const m = /^erofs (\w+)/.exec(String(chunk));
    if (m?.[1] !== undefined) {
      marks.set(m[1], turns);
      return true;
    }
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
  let stats;
  try {
    setImmediate(loop);
    stats = await writer.finish(root);
  } finally {
    stop = true;
    process.stderr.write = write;
    delete process.env.MONOCORE_EROFS_TIMING;
  }
  assert.equal(stats.copiedFiles, 4000);
  const during = (marks.get('inodes') ?? NaN) - (marks.get('pending') ?? NaN);
  t.diagnostic(`turns of the event loop during the walk and layout: ${during}`);
  assert.ok(during > 0, `the event loop turned during the walk (${during} turns)`);
});
