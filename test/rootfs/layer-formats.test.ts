// Layer formats (gzip, zstd through the CLI and through fzstd, plain tar), media
// type / magic checks, corrupt streams, and umoci-built images compared entry
// by entry (content, mode, owner, mtime, link target) with `umoci unpack`.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, linkSync, lutimesSync, mkdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { applyLayer, ensureImageRootfs, isMonocoreError, MonocoreHome, SUPPORTED_LAYER_MEDIA_TYPES, zstdCliAvailable } from '@monocore/engine';
import { gzip, tarArchive, zstd, type TarEntry } from './tar-writer.js';
import { describeTree, removeTempDirs, tempDir } from './tree.js';
import { umociImage, umociUnpack } from './umoci.js';

after(removeTempDirs);

const ENTRIES: TarEntry[] = [
  { name: './', type: 'dir', mode: 0o755, mtime: 1_600_000_000 },
  { name: 'etc/', type: 'dir', mode: 0o755, mtime: 1_600_000_001 },
  { name: 'etc/os-release', data: 'ID=monocore\n', mtime: 1_600_000_002 },
  { name: 'bin/', type: 'dir', mtime: 1_600_000_003 },
  { name: 'bin/tool', data: Buffer.alloc(2_500_000, 7), mode: 0o755, mtime: 1_600_000_004 },
  { name: 'bin/alias', type: 'symlink', linkname: 'tool', mtime: 1_600_000_005 },
];

function layerFiles(dir: string): Record<'none' | 'gzip' | 'zstd', string> {
  const tar = tarArchive(ENTRIES);
  const files = { none: join(dir, 'l.tar'), gzip: join(dir, 'l.tar.gz'), zstd: join(dir, 'l.tar.zst') };
  writeFileSync(files.none, tar);
  writeFileSync(files.gzip, gzip(tar));
  writeFileSync(files.zstd, zstd(tar));
  return files;
}

test('the zstd CLI is available (preferred zstd decoder; scripts/install-deps.sh installs it)', () => {
  assert.equal(zstdCliAvailable(), true);
});

test('gzip, zstd (CLI and fzstd) and plain layers unpack to the same tree, for every media type spelling', async () => {
  const dir = tempDir('formats');
  const files = layerFiles(dir);
  const ref = join(dir, 'ref');
  await applyLayer(files.none, ref, { mediaType: 'application/vnd.oci.image.layer.v1.tar' });
  const expected = describeTree(ref);
  assert.equal(expected['bin/tool']?.size, 2_500_000);
  let n = 0;
  for (const mediaType of SUPPORTED_LAYER_MEDIA_TYPES) {
    const kind = /zstd$/.test(mediaType) ? 'zstd' : /gzip$/.test(mediaType) ? 'gzip' : 'none';
    for (const zstdImpl of kind === 'zstd' ? (['cli', 'fzstd'] as const) : ([undefined] as const)) {
      const out = join(dir, `out-${n++}`);
      await applyLayer(files[kind], out, { mediaType, layer: `sha256:${kind}`, ...(zstdImpl ? { zstdImpl } : {}) });
      assert.deepEqual(describeTree(out), expected, `${mediaType} ${zstdImpl ?? ''}`);
    }
  }
  // Sniffing a file without a media type.
  for (const f of Object.values(files)) {
    const out = join(dir, `out-${n++}`);
    await applyLayer(f, out, { compression: 'auto' });
    assert.deepEqual(describeTree(out), expected);
  }
});

test('a blob whose magic bytes contradict its media type fails clearly', async () => {
  const dir = tempDir('magic');
  const files = layerFiles(dir);
  const cases: [string, string, RegExp][] = [
    [files.gzip, 'application/vnd.oci.image.layer.v1.tar+zstd', /declares zstd but the blob's first bytes are gzip data/],
    [files.zstd, 'application/vnd.oci.image.layer.v1.tar+gzip', /declares gzip but the blob's first bytes are zstd data/],
    [files.none, 'application/vnd.docker.image.rootfs.diff.tar.gzip', /declares gzip but the blob's first bytes are an uncompressed tar/],
    [files.gzip, 'application/vnd.oci.image.layer.v1.tar', /declares an uncompressed tar but the blob's first bytes are gzip data/],
  ];
  for (const [file, mediaType, re] of cases) {
    await assert.rejects(applyLayer(file, join(dir, 'out'), { mediaType, layer: 'sha256:abc' }), (e) => {
      assert.ok(isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER'), String(e));
      assert.match(e.message, /^layer sha256:abc: /);
      assert.match(e.message, re);
      return true;
    });
  }
  await assert.rejects(applyLayer(files.gzip, join(dir, 'out'), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted', layer: 'sha256:enc' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_UNSUPPORTED_MEDIA_TYPE') && /sha256:enc/.test(e.message) && /encrypted/.test(e.message));
  await assert.rejects(applyLayer(files.gzip, join(dir, 'out'), { mediaType: 'application/x-foo', layer: 'sha256:foo' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_UNSUPPORTED_MEDIA_TYPE') && /"application\/x-foo"/.test(e.message));
  await assert.rejects(applyLayer(join(dir, 'missing.tar'), join(dir, 'out'), { mediaType: 'application/vnd.oci.image.layer.v1.tar', layer: 'sha256:gone' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_LAYER_MISSING') && /sha256:gone/.test(e.message));
  // Gzip inside gzip is not a tar.
  const nested = join(dir, 'nested.tar.gz');
  writeFileSync(nested, gzip(gzip(tarArchive(ENTRIES))));
  await assert.rejects(applyLayer(nested, join(dir, 'out'), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', layer: 'sha256:nested' }),
    (e) => isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER') && /compressed again/.test(e.message));
});

test('corrupted and truncated compressed streams fail naming the layer', async () => {
  const dir = tempDir('corrupt');
  const files = layerFiles(dir);
  const gz = readFileSync(files.gzip);
  const flipped = Buffer.from(gz);
  for (let i = 100; i < 400; i++) flipped[i] = (flipped[i] ?? 0) ^ 0x5a;
  writeFileSync(join(dir, 'flipped.gz'), flipped);
  writeFileSync(join(dir, 'cut.gz'), gz.subarray(0, Math.floor(gz.length / 2)));
  const zs = readFileSync(files.zstd);
  writeFileSync(join(dir, 'cut.zst'), zs.subarray(0, Math.floor(zs.length / 2)));
  const zflip = Buffer.from(zs);
  for (let i = 200; i < 600; i++) zflip[i] = (zflip[i] ?? 0) ^ 0x5a;
  writeFileSync(join(dir, 'flipped.zst'), zflip);
  const cases: [string, string, string?][] = [
    ['flipped.gz', 'application/vnd.oci.image.layer.v1.tar+gzip'],
    ['cut.gz', 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
    ['cut.zst', 'application/vnd.oci.image.layer.v1.tar+zstd', 'cli'],
    ['cut.zst', 'application/vnd.oci.image.layer.v1.tar+zstd', 'fzstd'],
    ['flipped.zst', 'application/vnd.oci.image.layer.v1.tar+zstd', 'cli'],
    ['flipped.zst', 'application/vnd.oci.image.layer.v1.tar+zstd', 'fzstd'],
  ];
  for (const [f, mediaType, impl] of cases) {
    const layer = `sha256:${'c'.repeat(63)}${cases.findIndex((c) => c[0] === f && c[2] === impl)}`;
    await assert.rejects(
      applyLayer(join(dir, f), join(dir, `out-${f}-${impl ?? ''}`), { mediaType, layer, ...(impl ? { zstdImpl: impl as 'cli' | 'fzstd' } : {}) }),
      (e) => {
        assert.ok(isMonocoreError(e, 'MC_ROOTFS_BAD_LAYER'), `${f} ${impl ?? ''}: ${String(e)}`);
        assert.ok(e.message.includes(`layer ${layer}`), e.message);
        assert.equal(e.details.layer, layer);
        return true;
      },
    );
  }
});

test('umoci-built multi-layer image (whiteouts from deletions, links, modes, owners) unpacks exactly like umoci unpack', async () => {
  const dir = tempDir('umoci');
  const layout = join(dir, 'layout');
  const img = umociImage(layout, 'v1', dir, [
    (r) => {
      mkdirSync(join(r, 'etc/conf.d'), { recursive: true });
      writeFileSync(join(r, 'etc/conf.d/a.conf'), 'a=1\n');
      writeFileSync(join(r, 'etc/conf.d/b.conf'), 'b=1\n');
      mkdirSync(join(r, 'usr/bin'), { recursive: true });
      writeFileSync(join(r, 'usr/bin/prog'), Buffer.alloc(300_000, 3), { mode: 0o755 });
      linkSync(join(r, 'usr/bin/prog'), join(r, 'usr/bin/prog-hardlink'));
      symlinkSync('prog', join(r, 'usr/bin/prog-rel'));
      symlinkSync('/usr/bin/prog', join(r, 'usr/bin/prog-abs'));
      symlinkSync('/does/not/exist', join(r, 'dangling'));
      writeFileSync(join(r, 'usr/bin/suid'), 'x', { mode: 0o755 });
      chmodSync(join(r, 'usr/bin/suid'), 0o4755);
      mkdirSync(join(r, 'tmp'), { mode: 0o1777 });
      chmodSync(join(r, 'tmp'), 0o1777);
      mkdirSync(join(r, 'home/app/empty'), { recursive: true });
      chownSync(join(r, 'home/app'), 1000, 1000);
      writeFileSync(join(r, 'home/app/data'), 'data');
      chownSync(join(r, 'home/app/data'), 1000, 2000);
      mkdirSync(join(r, 'olddir/sub'), { recursive: true });
      writeFileSync(join(r, 'olddir/sub/f'), 'f');
      mkdirSync(join(r, 'readonly'));
      writeFileSync(join(r, 'readonly/f'), 'ro');
      chmodSync(join(r, 'readonly'), 0o555);
      utimesSync(join(r, 'etc/conf.d/a.conf'), 1_000_000_000, 1_000_000_000);
      lutimesSync(join(r, 'usr/bin/prog-rel'), 1_100_000_000, 1_100_000_000);
    },
    (r) => {
      unlinkSync(join(r, 'etc/conf.d/a.conf')); // → .wh.a.conf
      rmSync(join(r, 'olddir'), { recursive: true }); // → .wh.olddir
      writeFileSync(join(r, 'etc/conf.d/c.conf'), 'c=1\n');
      writeFileSync(join(r, 'usr/bin/prog'), 'replaced'); // also changes the hardlinked inode
      chmodSync(join(r, 'readonly'), 0o755);
      writeFileSync(join(r, 'readonly/g'), 'g');
      chmodSync(join(r, 'readonly'), 0o555);
    },
  ]);
  assert.equal(img.layers.length, 2);
  const ours = await ensureImageRootfs({ home: new MonocoreHome(join(dir, 'home')), imageId: img.manifestDigest, layers: img.layers });
  const theirs = umociUnpack(layout, 'v1', join(dir, 'bundle-ref'));
  const a = describeTree(ours.rootfs);
  const b = describeTree(theirs);
  assert.deepEqual(a, b);
  // Spot checks so the comparison cannot pass on two empty trees.
  assert.equal(a['etc/conf.d/a.conf'], undefined);
  assert.equal(a['olddir'], undefined);
  assert.equal(readFileSync(join(ours.rootfs, 'etc/conf.d/c.conf'), 'utf8'), 'c=1\n');
  assert.equal(a['usr/bin/suid']?.mode, 0o4755);
  assert.equal(a['tmp']?.mode, 0o1777);
  assert.deepEqual([a['home/app/data']?.uid, a['home/app/data']?.gid], [1000, 2000]);
  assert.equal(a['readonly']?.mode, 0o555);
  assert.equal(a['usr/bin/prog-rel']?.target, 'prog');
  assert.equal(a['dangling']?.target, '/does/not/exist');
  assert.equal(ours.ownershipRecorded, false);

  // The same layers recompressed with zstd give the same tree.
  const zlayers = img.layers.map((l, i) => {
    const p = join(dir, `layer-${i}.zst`);
    writeFileSync(p, zstd(gunzipSync(readFileSync(l.path))));
    return { ...l, path: p, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' };
  });
  const z = await ensureImageRootfs({ home: new MonocoreHome(join(dir, 'home-z')), imageId: img.manifestDigest, layers: zlayers });
  assert.deepEqual(describeTree(z.rootfs), b);
});
