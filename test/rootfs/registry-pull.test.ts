// End to end through the real registry on loopback: images pushed with skopeo,
// pulled with pullImage (the OCI engineer's code), unpacked by the rootfs
// domain. Covers whiteouts/links/modes from umoci, a zstd OCI image, and both
// kinds of hostile layer: one rejected (nothing stored as unpacked), one
// contained (sentinel outside untouched).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { isMonocoreError, MonocoreHome, pullImage, RegistryClient, imageRootfsPath } from '@monocore/engine';
import { testEnv } from '../support/env.js';
import { gzip, tarArchive, zstd, type TarEntry } from './tar-writer.js';
import { describeTree, removeTempDirs, tempDir } from './tree.js';
import { umociImage, umociUnpack } from './umoci.js';

const { registry } = testEnv();
const client = new RegistryClient();
after(async () => {
  await client.close();
  removeTempDirs();
});

function repo(name: string): string {
  return `${registry}/monocore-test/rootfs-${name}-${randomBytes(4).toString('hex')}:v1`;
}

function push(layout: string, tag: string, dest: string): void {
  execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${dest}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A one-tag OCI layout written by hand (the layers are our crafted tars). */
function handLayout(dir: string, tag: string, layers: { data: Buffer; mediaType: string; diff: Buffer }[]): string[] {
  const layout = join(dir, 'layout');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const blob = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(layout, 'blobs', 'sha256', hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const ls = layers.map((l) => ({ mediaType: l.mediaType, ...blob(l.data) }));
  const config = blob(Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${createHash('sha256').update(l.diff).digest('hex')}`) },
  })));
  const manifest = blob(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: ls,
  })));
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return ls.map((l) => l.digest);
}

const gzLayer = (entries: TarEntry[]): { data: Buffer; mediaType: string; diff: Buffer } => {
  const diff = tarArchive(entries);
  return { data: gzip(diff), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diff };
};

test('a umoci image with whiteouts, links, modes and owners pulls to the same tree as umoci unpack; so does its zstd twin', async () => {
  const dir = tempDir('pull-umoci');
  const layout = join(dir, 'layout');
  const img = umociImage(layout, 'v1', dir, [
    (r) => {
      mkdirSync(join(r, 'etc'), { recursive: true });
      writeFileSync(join(r, 'etc/keep'), 'keep');
      writeFileSync(join(r, 'etc/remove-me'), 'gone soon');
      mkdirSync(join(r, 'var/cache/apt'), { recursive: true });
      writeFileSync(join(r, 'var/cache/apt/pkg'), 'cached');
      writeFileSync(join(r, 'tool'), 'x', { mode: 0o4755 });
      execFileSync('ln', [join(r, 'tool'), join(r, 'tool-link')]);
      execFileSync('ln', ['-s', '/etc/keep', join(r, 'abs-link')]);
      execFileSync('chown', ['1234:5678', join(r, 'etc/keep')]);
    },
    (r) => {
      execFileSync('rm', ['-rf', join(r, 'etc/remove-me'), join(r, 'var/cache/apt')]);
      writeFileSync(join(r, 'etc/added'), 'added');
    },
  ]);
  const ref = repo('umoci');
  push(layout, 'v1', ref);
  const home = new MonocoreHome(join(dir, 'home'));
  const pulled = await pullImage(ref, { home, client });
  assert.equal(pulled.rootfs, imageRootfsPath(home, pulled.manifestDigest));
  const want = describeTree(umociUnpack(layout, 'v1', join(dir, 'ref-bundle')));
  const got = describeTree(pulled.rootfs);
  assert.deepEqual(got, want);
  assert.equal(got['etc/remove-me'], undefined);
  assert.equal(got['var/cache/apt'], undefined);
  assert.deepEqual([got['etc/keep']?.uid, got['etc/keep']?.gid, got['tool']?.mode], [1234, 5678, 0o4755]);

  // The same layers as zstd in a hand-made OCI layout.
  const zdir = tempDir('pull-zstd');
  handLayout(zdir, 'v1', img.layers.map((l) => {
    const diff = gunzipSync(readFileSync(l.path));
    return { data: zstd(diff), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', diff };
  }));
  const zref = repo('zstd');
  push(join(zdir, 'layout'), 'v1', zref);
  const [zname, ztag] = zref.slice(registry.length + 1).split(':') as [string, string];
  const served = await (await fetch(`http://${registry}/v2/${zname}/manifests/${ztag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json() as { layers: { mediaType: string }[] };
  assert.deepEqual(served.layers.map((l) => l.mediaType), img.layers.map(() => 'application/vnd.oci.image.layer.v1.tar+zstd'), 'the registry serves zstd layers');
  const zpulled = await pullImage(zref, { home, client });
  assert.notEqual(zpulled.manifestDigest, pulled.manifestDigest);
  assert.deepEqual(describeTree(zpulled.rootfs), want);
});

test('hostile images through the registry: ".." rejected with the layer and entry named, symlink escape contained', async () => {
  const dir = tempDir('pull-hostile');
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'passwd'), 'host passwd\n');
  const before = describeTree(outside, { ino: true });

  const rejectDir = join(dir, 'reject');
  const [, badLayer] = handLayout(rejectDir, 'v1', [
    gzLayer([{ name: 'etc/', type: 'dir' }, { name: 'etc/ok', data: 'ok' }]),
    gzLayer([{ name: 'etc/../../../outside/cron', data: '* * * * * root pwn\n' }]),
  ]);
  const rref = repo('reject');
  push(join(rejectDir, 'layout'), 'v1', rref);
  const home = new MonocoreHome(join(dir, 'home'));
  await assert.rejects(pullImage(rref, { home, client }), (e) => {
    assert.ok(isMonocoreError(e, 'MC_ROOTFS_PATH_ESCAPE'), String(e));
    assert.ok(e.message.includes(`layer ${badLayer} entry "etc/../../../outside/cron"`), e.message);
    return true;
  });
  const leftovers = existsSync(home.imageRootfsDir) ? readdirSync(home.imageRootfsDir).filter((n) => n !== '.locks') : [];
  assert.deepEqual(leftovers, [], 'nothing unpacked or half-unpacked remains');

  const containDir = join(dir, 'contain');
  handLayout(containDir, 'v1', [
    gzLayer([{ name: 'etc', type: 'symlink', linkname: outside }]),
    gzLayer([{ name: 'etc/passwd', data: 'root::0:0::/:/bin/sh\n' }, { name: 'stolen', type: 'hardlink', linkname: 'etc/passwd' }]),
  ]);
  const cref = repo('contain');
  push(join(containDir, 'layout'), 'v1', cref);
  const pulled = await pullImage(cref, { home, client });
  assert.equal(readFileSync(join(pulled.rootfs, outside, 'passwd'), 'utf8'), 'root::0:0::/:/bin/sh\n');
  assert.equal(readFileSync(join(pulled.rootfs, 'stolen'), 'utf8'), 'root::0:0::/:/bin/sh\n');
  assert.deepEqual(describeTree(outside, { ino: true }), before, 'the host directory is untouched');
});
