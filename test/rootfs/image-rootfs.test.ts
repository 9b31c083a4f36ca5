// ensureImageRootfs across processes: idempotence, one unpack for concurrent
// callers (flock), a SIGKILLed unpack never taken as complete, unpacking as a
// non-root user (ownership recorded), removal.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { applyLayer, cleanupRootfsTemps, ensureImageRootfs, HostLock, imageRootfsPath, isMonocoreError, MonocoreHome, readOwnershipRecord, removeImageRootfs, UnpackSession, type ImageLayerInput } from '@monocore/engine';
import { gzip, tarArchive, type TarEntry } from './tar-writer.js';
import { describeTree, removeTempDirs, tempDir } from './tree.js';

after(removeTempDirs);

const CHILD = fileURLToPath(new URL('./unpack-child.js', import.meta.url));
const GZ = 'application/vnd.oci.image.layer.v1.tar+gzip';
const TAR = 'application/vnd.oci.image.layer.v1.tar';
const IMAGE = 'sha256:' + '1'.repeat(64);

function writeLayer(dir: string, name: string, entries: TarEntry[], compress = true): ImageLayerInput {
  const tar = tarArchive(entries);
  const data = compress ? gzip(tar) : tar;
  const path = join(dir, name);
  writeFileSync(path, data);
  chmodSync(path, 0o644);
  return { digest: 'sha256:' + Buffer.from(name).toString('hex').padEnd(64, '0').slice(0, 64), mediaType: compress ? GZ : TAR, size: data.length, path };
}

function smallImage(dir: string): ImageLayerInput[] {
  return [
    writeLayer(dir, 'base', [
      { name: './', type: 'dir', mode: 0o755, mtime: 1_700_000_000 },
      { name: 'bin/', type: 'dir', mode: 0o555 },
      { name: 'bin/sh', data: '#!sh', mode: 0o4755, uid: 0 },
      { name: 'home/u/', type: 'dir', uid: 1000, gid: 1000, mode: 0o700 },
      { name: 'home/u/notes', data: 'n', uid: 1000, gid: 1000 },
      { name: 'dev/console', type: 'char', devmajor: 5, devminor: 1, mode: 0o600 },
      { name: 'old', data: 'old' },
    ]),
    writeLayer(dir, 'top', [{ name: '.wh.old', data: '' }, { name: 'new', data: 'new', uid: 33, gid: 33 }]),
  ];
}

interface ChildOut {
  progress: unknown[];
  result?: { rootfs: string; ownershipRecorded: boolean; progressEvents: number; removed?: boolean };
  error?: { code?: string; message: string };
  code: number | null;
  signal: NodeJS.Signals | null;
}

function runChild(args: object, opts: { uid?: number; gid?: number; onLine?: (line: unknown, kill: () => void) => void } = {}): Promise<ChildOut> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
    });
    const out: ChildOut = { progress: [], code: null, signal: null };
    createInterface({ input: child.stdout }).on('line', (l) => {
      const msg = JSON.parse(l) as { progress?: unknown; result?: ChildOut['result']; error?: ChildOut['error'] };
      if (msg.progress) out.progress.push(msg.progress);
      if (msg.result) out.result = msg.result;
      if (msg.error) out.error = msg.error;
      opts.onLine?.(msg, () => child.kill('SIGKILL'));
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      out.code = code;
      out.signal = signal;
      resolve(out);
    });
  });
}

test('ensureImageRootfs unpacks once, then returns at once; removeImageRootfs removes atomically', async () => {
  const dir = tempDir('ensure');
  const home = new MonocoreHome(join(dir, 'home'));
  const layers = smallImage(dir);
  const events: { layer: number; layers: number; digest: string; bytes?: number }[] = [];
  const r = await ensureImageRootfs({ home, imageId: IMAGE, layers, onProgress: (e) => events.push(e) });
  assert.equal(r.rootfs, imageRootfsPath(home, IMAGE));
  assert.equal(r.ownershipRecorded, false, 'running as root: owners applied');
  assert.deepEqual(events.filter((e) => e.bytes === 0).map((e) => [e.layer, e.layers, e.digest]), [[1, 2, layers[0]?.digest], [2, 2, layers[1]?.digest]]);
  assert.deepEqual(events.at(-1), { layer: 2, layers: 2, digest: layers[1]?.digest, bytes: layers[1]?.size });
  const t = describeTree(r.rootfs);
  assert.equal(t['old'], undefined);
  assert.deepEqual([t['new']?.uid, t['bin/sh']?.mode, t['bin']?.mode, t['.']?.mtime], [33, 0o4755, 0o555, 1_700_000_000]);
  // Other host users cannot reach the image's setuid binaries.
  assert.equal(statSync(join(r.rootfs, '..')).mode & 0o777, 0o700);
  const probe = spawnSync(process.execPath, ['-e', `require('fs').statSync(${JSON.stringify(join(r.rootfs, 'bin/sh'))})`], { uid: 65534, gid: 65534, encoding: 'utf8' });
  assert.notEqual(probe.status, 0);
  assert.match(probe.stderr, /EACCES/);
  const rec = await readOwnershipRecord(home, IMAGE);
  assert.deepEqual(rec?.devices, [{ path: 'dev/console', type: 'char', major: 5, minor: 1, mode: 0o600, uid: 0, gid: 0 }]);
  assert.equal(existsSync(join(r.rootfs, 'dev/console')), false);

  // Second call: nothing unpacked again (no progress), even with blobs gone.
  const again: unknown[] = [];
  const r2 = await ensureImageRootfs({ home, imageId: IMAGE, layers: layers.map((l) => ({ ...l, path: '/nonexistent' })), onProgress: (e) => again.push(e) });
  assert.ok(typeof r.unpackSeconds === 'number' && r.unpackSeconds > 0, 'the first call reports its unpack time');
  assert.deepEqual(r2, { rootfs: r.rootfs, ownershipRecorded: r.ownershipRecorded }, 'no unpack time: nothing was unpacked');
  assert.deepEqual(again, []);

  assert.equal(await removeImageRootfs(home, IMAGE), true);
  assert.equal(existsSync(r.rootfs), false);
  assert.equal(await readOwnershipRecord(home, IMAGE), undefined);
  assert.equal(await removeImageRootfs(home, IMAGE), false);
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n !== '.locks'), [], 'nothing left behind');
});

test('invalid arguments and failing layers: clear errors, nothing left that looks complete', async () => {
  const dir = tempDir('invalid');
  const home = new MonocoreHome(join(dir, 'home'));
  await assert.rejects(ensureImageRootfs({ home, imageId: 'latest', layers: [] }), (e) => isMonocoreError(e, 'MC_ROOTFS_INVALID_ARGUMENT') && /"latest"/.test(e.message));
  const good = smallImage(dir);
  const bad = writeLayer(dir, 'bad', [{ name: 'x/../../escape', data: 'x' }]);
  await assert.rejects(ensureImageRootfs({ home, imageId: IMAGE, layers: [...good, bad] }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_PATH_ESCAPE') && e.message.includes(`layer ${bad.digest} entry "x/../../escape"`));
  assert.equal(existsSync(imageRootfsPath(home, IMAGE)), false);
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n !== '.locks'), [], 'failed temp dir removed');
  await assert.rejects(ensureImageRootfs({ home, imageId: IMAGE, layers: [{ ...good[0]!, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted' }] }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_UNSUPPORTED_MEDIA_TYPE'));
});

test('the next layer is decompressed ahead: a corrupt one fails with its own digest once its turn comes, and nothing is committed', async () => {
  const dir = tempDir('ahead');
  const home = new MonocoreHome(join(dir, 'home'));
  // Layer 1 takes a while to apply (many files), so layer 2's decompressor, started
  // when layer 1 begins, has already failed when the parser gets to it.
  const many: TarEntry[] = Array.from({ length: 2000 }, (_, i) => ({ name: `d${i % 20}/f${i}`, data: `file ${i}` }));
  const first = writeLayer(dir, 'first', many);
  const corrupt = writeLayer(dir, 'corrupt', [{ name: 'z', data: 'z'.repeat(100_000) }]);
  const bytes = readFileSync(corrupt.path);
  bytes.fill(0x55, 20, bytes.length - 8); // gzip magic kept, deflate data garbage
  writeFileSync(corrupt.path, bytes);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('uncaughtException', onUnhandled);
  process.on('unhandledRejection', onUnhandled);
  try {
    await assert.rejects(ensureImageRootfs({ home, imageId: IMAGE, layers: [first, corrupt] }),
      (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && e.message.includes(`layer ${corrupt.digest}`) && /corrupt gzip/.test(e.message));
  } finally {
    process.off('uncaughtException', onUnhandled);
    process.off('unhandledRejection', onUnhandled);
  }
  assert.deepEqual(unhandled, [], 'the early failure was held for its turn, not thrown into the process');
  assert.equal(existsSync(imageRootfsPath(home, IMAGE)), false);
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n !== '.locks'), [], 'failed temp dir removed');
  const ok = await ensureImageRootfs({ home, imageId: IMAGE, layers: [first] });
  assert.equal(readFileSync(join(ok.rootfs, 'd3/f1983'), 'utf8'), 'file 1983');
});

test('a rootfs is flushed to disk after its commit; one committed in an earlier boot and never confirmed synced is unpacked again', async () => {
  const dir = tempDir('synced');
  const home = new MonocoreHome(join(dir, 'home'));
  const layers = smallImage(dir);
  const first = await ensureImageRootfs({ home, imageId: IMAGE, layers });
  const imageDir = join(home.imageRootfsDir, IMAGE.slice(7));
  const [bootId, nonce] = readFileSync(join(imageDir, 'boot-id'), 'utf8').trim().split(' ');
  assert.equal(bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  const marker = (): string => readFileSync(join(imageDir, 'synced'), 'utf8');
  for (let i = 0; i < 200 && marker() === ''; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(marker(), nonce, 'the background sync confirmed this commit');

  // Pretend the tree was committed in another boot. Confirmed synced: still complete.
  writeFileSync(join(imageDir, 'boot-id'), `an-earlier-boot ${nonce}\n`);
  writeFileSync(join(first.rootfs, 'sentinel'), 'kept');
  await ensureImageRootfs({ home, imageId: IMAGE, layers });
  assert.equal(readFileSync(join(first.rootfs, 'sentinel'), 'utf8'), 'kept');
  // A marker of another commit (an earlier tree at this path) confirms nothing.
  writeFileSync(join(imageDir, 'synced'), 'another-commit');
  writeFileSync(join(first.rootfs, 'sentinel2'), 'x');
  const other = await ensureImageRootfs({ home, imageId: IMAGE, layers });
  assert.equal(existsSync(join(other.rootfs, 'sentinel2')), false, 'unpacked again');
  // Not confirmed at all: the data behind the names may be gone; it is unpacked afresh.
  writeFileSync(join(imageDir, 'boot-id'), 'an-earlier-boot 0\n');
  rmSync(join(imageDir, 'synced'), { force: true });
  const again = await ensureImageRootfs({ home, imageId: IMAGE, layers });
  assert.equal(existsSync(join(again.rootfs, 'sentinel')), false, 'unpacked again');
  assert.equal(readFileSync(join(again.rootfs, 'new'), 'utf8'), 'new');
});

test('processes ensuring the same image at once: they wait on the lock, one unpacks, all get the complete rootfs', async () => {
  const dir = tempDir('concurrent');
  const home = join(dir, 'home');
  const files: TarEntry[] = [{ name: 'data/', type: 'dir' }];
  for (let i = 0; i < 200; i++) files.push({ name: `data/f${i}`, data: Buffer.alloc(50_000, i % 251) });
  const layers = [writeLayer(dir, 'big', files)];
  const args = { action: 'ensure', home, imageId: IMAGE, layers };
  // Hold the image's lock ourselves until every child has reported that it waits:
  // the contention is then certain, not a matter of timing.
  const h = new MonocoreHome(home);
  mkdirSync(join(h.imageRootfsDir, '.locks'), { recursive: true });
  const held = await HostLock.acquire(join(h.imageRootfsDir, '.locks', `${IMAGE.slice(7)}.lock`));
  let waiting = 0;
  let allWaiting!: () => void;
  const everyoneWaits = new Promise<void>((r) => (allWaiting = r));
  const onLine = (msg: unknown): void => {
    if ((msg as { waiting?: string }).waiting !== undefined && ++waiting === 3) allWaiting();
  };
  const children = [runChild(args, { onLine }), runChild(args, { onLine }), runChild(args, { onLine })];
  // A child that dies before waiting fails the test instead of hanging it.
  await Promise.race([everyoneWaits, Promise.race(children).then((o) => assert.fail(`a child ended while the lock was held: ${JSON.stringify(o)}`))]);
  await held.release();
  const outs = await Promise.all(children);
  for (const o of outs) {
    assert.equal(o.code, 0, JSON.stringify(o.error));
    assert.equal(o.result?.rootfs, imageRootfsPath(h, IMAGE));
  }
  const unpackers = outs.filter((o) => (o.result?.progressEvents ?? 0) > 0);
  assert.equal(unpackers.length, 1, `exactly one process unpacks (progress events: ${outs.map((o) => o.result?.progressEvents).join(', ')})`);
  assert.equal(readdirSync(join(imageRootfsPath(h, IMAGE), 'data')).length, 200);
});

test('an unpack SIGKILLed midway is never taken as complete; the next run unpacks afresh and cleans up', async () => {
  const dir = tempDir('killed');
  const home = new MonocoreHome(join(dir, 'home'));
  const small: TarEntry[] = [{ name: 'etc/', type: 'dir' }, { name: 'etc/version', data: '1' }];
  const big: TarEntry[] = [{ name: 'payload/', type: 'dir', mode: 0o755, mtime: 1_650_000_000 }];
  for (let d = 0; d < 20; d++) big.push({ name: `payload/d${d}/`, type: 'dir', mtime: 1_650_000_000 });
  for (let i = 0; i < 2000; i++) big.push({ name: `payload/d${i % 20}/f${i}`, data: Buffer.alloc(40_000, i % 256), mtime: 1_650_000_000 + i });
  const layers = [writeLayer(dir, 'small', small), writeLayer(dir, 'big', big, false)];
  const bigSize = layers[1]!.size;
  let killedAt = -1;
  const out = await runChild({ action: 'ensure', home: home.root, imageId: IMAGE, layers }, {
    onLine: (msg, kill) => {
      const p = (msg as { progress?: { layer: number; bytes?: number } }).progress;
      if (p && p.layer === 2 && (p.bytes ?? 0) > bigSize / 3 && (p.bytes ?? 0) < bigSize && killedAt < 0) {
        killedAt = p.bytes ?? 0;
        kill();
      }
    },
  });
  assert.equal(out.signal, 'SIGKILL', `the child was killed midway (it finished: ${JSON.stringify(out.result)})`);
  assert.ok(killedAt > 0 && killedAt < bigSize);
  assert.equal(existsSync(imageRootfsPath(home, IMAGE)), false, 'a killed unpack left a rootfs at the final path');
  const leftovers = readdirSync(home.imageRootfsDir).filter((n) => n.startsWith('.tmp-'));
  assert.equal(leftovers.length, 1, 'the killed unpack left its temp dir (proves it was midway)');
  const partial = describeTree(join(home.imageRootfsDir, leftovers[0] as string, 'rootfs'));
  assert.ok(Object.keys(partial).length > 3, 'partial unpack had started writing');

  const events: unknown[] = [];
  const r = await ensureImageRootfs({ home, imageId: IMAGE, layers, onProgress: (e) => events.push(e) });
  assert.ok(events.length > 0, 'a fresh unpack ran');
  const ref = join(dir, 'ref');
  const session = new UnpackSession(ref);
  for (const l of layers) await applyLayer(l.path, ref, { mediaType: l.mediaType, session });
  await session.finish();
  const want = describeTree(ref);
  delete want['.'];
  const got = describeTree(r.rootfs);
  delete got['.'];
  assert.deepEqual(got, want, 'the new rootfs is complete');
  assert.equal(Object.keys(got).filter((k) => k.startsWith('payload/d')).length, 2020);
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n.startsWith('.tmp-')), [], 'stale temp dir cleaned');

  // cleanupRootfsTemps (for image prune): leaves a busy image's temp dir alone.
  const fakes = ['9', '8'].map((c) => join(home.imageRootfsDir, `.tmp-${c.repeat(64)}-1-abcd`));
  for (const f of fakes) {
    mkdirSync(join(f, 'rootfs', 'x'), { recursive: true });
    chmodSync(join(f, 'rootfs'), 0o555);
  }
  const busy = await HostLock.acquire(join(home.imageRootfsDir, '.locks', `${'9'.repeat(64)}.lock`));
  assert.equal(await cleanupRootfsTemps(home), 1);
  assert.deepEqual([existsSync(fakes[0]!), existsSync(fakes[1]!)], [true, false]);
  await busy.release();
  assert.equal(await cleanupRootfsTemps(home), 1);
  assert.equal(existsSync(fakes[0]!), false);
});

test('as a non-root user: ownership recorded in ownership.json, modes kept, removal of read-only trees works', async () => {
  const dir = tempDir('nonroot');
  chmodSync(dir, 0o755);
  const home = join(dir, 'home');
  mkdirSync(home);
  chownSync(home, 65534, 65534);
  const layers = smallImage(dir);
  const out = await runChild({ action: 'ensure', home, imageId: IMAGE, layers }, { uid: 65534, gid: 65534 });
  assert.equal(out.code, 0, JSON.stringify(out.error));
  assert.equal(out.result?.ownershipRecorded, true);
  const rootfs = out.result?.rootfs as string;
  const rec = JSON.parse(readFileSync(join(rootfs, '..', 'ownership.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(rec, {
    version: 1,
    imageId: IMAGE,
    ownershipRecorded: true,
    defaultOwner: { uid: 0, gid: 0 },
    owners: [
      { path: 'home/u', uid: 1000, gid: 1000 },
      { path: 'home/u/notes', uid: 1000, gid: 1000 },
      { path: 'new', uid: 33, gid: 33 },
    ],
    devices: [{ path: 'dev/console', type: 'char', major: 5, minor: 1, mode: 0o600, uid: 0, gid: 0 }],
  });
  const st = statSync(join(rootfs, 'bin/sh'));
  assert.equal(st.uid, 65534, 'owned by the unpacking user');
  assert.equal(st.mode & 0o7777, 0o4755, 'setuid bit kept for the guest');
  assert.equal(statSync(join(rootfs, 'bin')).mode & 0o777, 0o555);
  const rm = await runChild({ action: 'remove', home, imageId: IMAGE, layers: [] }, { uid: 65534, gid: 65534 });
  assert.equal(rm.code, 0, JSON.stringify(rm.error));
  assert.equal(rm.result?.removed, true);
  assert.equal(existsSync(rootfs), false);
});

test('layers given with `ready` promises unpack as they arrive; a failed download aborts cleanly', async () => {
  const dir = tempDir('ready');
  const home = new MonocoreHome(join(dir, 'home'));
  const layers = smallImage(dir);
  const order: string[] = [];
  let release!: () => void;
  const second = new Promise<void>((r) => (release = r));
  // Learn when the unpacker waits for layer 2: `await` calls then() on the ready thenable.
  let waiting!: () => void;
  const unpackerWaits = new Promise<void>((r) => (waiting = r));
  const secondReady = second.then(() => order.push('layer 2 ready'));
  const ready = {
    then: (ok: () => void, fail: (e: unknown) => void) => (waiting(), secondReady.then(ok, fail)),
    catch: (fail: (e: unknown) => void) => secondReady.catch(fail),
  } as unknown as Promise<void>;
  let layer1Started!: () => void;
  const layer1 = new Promise<void>((r) => (layer1Started = r));
  const p = ensureImageRootfs({
    home,
    imageId: IMAGE,
    layers: [{ ...layers[0]!, ready: Promise.resolve() }, { ...layers[1]!, ready }],
    onProgress: (e) => {
      if (e.bytes !== 0) return;
      order.push(`layer ${e.layer} started`);
      if (e.layer === 1) layer1Started();
    },
  });
  await Promise.race([
    Promise.all([layer1, unpackerWaits]),
    p.then(() => assert.fail(`finished without waiting for layer 2's ready promise: ${order.join(', ')}`)),
  ]);
  order.push('releasing');
  release();
  const r = await p;
  assert.deepEqual(order, ['layer 1 started', 'releasing', 'layer 2 ready', 'layer 2 started']);
  assert.equal(readFileSync(join(r.rootfs, 'new'), 'utf8'), 'new');

  const other = 'sha256:' + '2'.repeat(64);
  const boom = new Error('download failed: connection reset');
  await assert.rejects(ensureImageRootfs({
    home,
    imageId: other,
    layers: [layers[0]!, { ...layers[1]!, ready: new Promise((_, rej) => setTimeout(() => rej(boom), 50)) }],
  }), (e) => e === boom);
  assert.equal(existsSync(imageRootfsPath(home, other)), false);
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n.startsWith('.tmp-')), []);
});

test('an aborted unpack rejects with the signal\'s reason and leaves nothing; the next call unpacks', async () => {
  const dir = tempDir('abort');
  const home = new MonocoreHome(join(dir, 'home'));
  const big: TarEntry[] = [{ name: 'p/', type: 'dir' }];
  for (let i = 0; i < 1500; i++) big.push({ name: `p/f${i}`, data: Buffer.alloc(20_000, i % 256) });
  const layers = [writeLayer(dir, 'abort-big', big, false)];
  const ctl = new AbortController();
  const reason = new Error('pull cancelled by the user');
  let aborted = false;
  await assert.rejects(ensureImageRootfs({
    home, imageId: IMAGE, layers, signal: ctl.signal,
    onProgress: (e) => {
      if (!aborted && (e.bytes ?? 0) > 0 && (e.bytes ?? 0) < layers[0]!.size) {
        aborted = true;
        ctl.abort(reason);
      }
    },
  }), (e) => e === reason);
  assert.ok(aborted, 'aborted midway');
  assert.equal(existsSync(imageRootfsPath(home, IMAGE)), false);
  assert.deepEqual(readdirSync(home.imageRootfsDir).filter((n) => n.startsWith('.tmp-')), []);
  const r = await ensureImageRootfs({ home, imageId: IMAGE, layers });
  assert.equal(readdirSync(join(r.rootfs, 'p')).length, 1500);
});
