// Pulls every manifest kind from the real registry on loopback (images built with
// umoci and pushed with skopeo), platform selection, 404, and warm pulls.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageStore, LocalContentStore, RegistryClient, hostPlatform, formatPlatform, isMonocoreError, pullImage } from '@monocore/engine';
import { buildImage, buildIndex, layoutEntry, pushImage, pushLayoutVerbatim, recompressImage, registryManifest, scratch, uniqueRepo } from './support/oci-fixtures.js';
import { ociTestEnv, tempHome } from './support/oci-env.js';
import { startRegistryProxy } from './support/registry-proxy.js';

const { registry } = ociTestEnv();
const host = formatPlatform(hostPlatform());
const work = await scratch();
const layout = join(work.dir, 'layout');
const repos = {
  oci: uniqueRepo('kinds-oci'),
  index: uniqueRepo('kinds-index'),
  v2s2: uniqueRepo('kinds-v2s2'),
  list: uniqueRepo('kinds-list'),
};

before(async () => {
  await buildImage(layout, 'amd64', {
    layers: [{ 'etc/which': 'amd64\n', 'srv/app.txt': 'first layer\n' }, { 'etc/second': 'second layer\n' }],
    arch: 'amd64',
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo hi'],
    env: ['A=1', 'PATH=/usr/bin:/bin'],
    workingDir: '/srv',
    user: '1000:1000',
  });
  await buildImage(layout, 'arm64', { layers: [{ 'etc/which': 'arm64\n' }], arch: 'arm64', variant: 'v8', cmd: ['/bin/true'] });
  await buildIndex(
    layout,
    'multi',
    [
      { tag: 'amd64', os: 'linux', architecture: 'amd64' },
      { tag: 'arm64', os: 'linux', architecture: 'arm64', variant: 'v8' },
    ],
    'arm64',
  );
  await pushImage(layout, 'amd64', `${registry}/${repos.oci}:v1`);
  await pushImage(layout, 'multi', `${registry}/${repos.index}:v1`, { all: true });
  await pushImage(layout, 'amd64', `${registry}/${repos.v2s2}:v1`, { format: 'v2s2' });
  await pushImage(layout, 'multi', `${registry}/${repos.list}:v1`, { all: true, format: 'v2s2' });
});

after(() => work.cleanup());

const ACCEPT_ALL = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

async function expectAmd64Image(home: Awaited<ReturnType<typeof tempHome>>['home'], reference: string, wantMediaType: string) {
  const served = await registryManifest(registry, reference.split('/').slice(1).join('/').split(':')[0]!, 'v1', ACCEPT_ALL);
  assert.equal(served.mediaType, wantMediaType, 'the registry serves the manifest kind under test');
  const pulled = await pullImage(reference, { home, platform: 'linux/amd64' });
  assert.equal(pulled.reference, reference);
  assert.equal(pulled.platform, 'linux/amd64');
  assert.match(pulled.manifestDigest, /^sha256:[a-f0-9]{64}$/);
  assert.equal(await readFile(join(pulled.rootfs, 'etc/which'), 'utf8'), 'amd64\n');
  assert.equal(await readFile(join(pulled.rootfs, 'etc/second'), 'utf8'), 'second layer\n');
  assert.equal(await readFile(join(pulled.rootfs, 'srv/app.txt'), 'utf8'), 'first layer\n');
  assert.deepEqual(pulled.config, { env: ['A=1', 'PATH=/usr/bin:/bin'], entrypoint: ['/bin/sh', '-c'], cmd: ['echo hi'], workingDir: '/srv', user: '1000:1000' });
  const [record] = await new ImageStore(home).require(reference);
  assert.ok(record);
  assert.equal(record.manifestDigest, pulled.manifestDigest);
  assert.equal(record.layers.length, 2);
  const blobs = new LocalContentStore(home);
  for (const l of record.layers) assert.equal((await blobs.info(l.digest))?.size, l.size, `layer ${l.digest} is stored with its size`);
  return { pulled, record, served };
}

describe('manifest kinds', () => {
  test('OCI image manifest', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const { record, served } = await expectAmd64Image(home, `${registry}/${repos.oci}:v1`, 'application/vnd.oci.image.manifest.v1+json');
      assert.equal(record.digest, served.digest, 'a single manifest is its own top-level digest');
      assert.equal((await layoutEntry(layout, 'amd64')).digest, record.manifestDigest, 'skopeo pushed umoci’s manifest unchanged');
    } finally {
      await cleanup();
    }
  });

  test('Docker schema 2 manifest (skopeo --format v2s2)', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const { record } = await expectAmd64Image(home, `${registry}/${repos.v2s2}:v1`, 'application/vnd.docker.distribution.manifest.v2+json');
      assert.equal(record.manifestMediaType, 'application/vnd.docker.distribution.manifest.v2+json');
      assert.ok(record.layers.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip'));
    } finally {
      await cleanup();
    }
  });

  test('OCI image index: picks the requested platform, skips the attestation entry', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const ref = `${registry}/${repos.index}:v1`;
      const { record, served } = await expectAmd64Image(home, ref, 'application/vnd.oci.image.index.v1+json');
      assert.equal(record.digest, served.digest, 'the record keeps the index digest the tag resolved to');
      assert.notEqual(record.manifestDigest, record.digest);
      const arm = await pullImage(ref, { home, platform: 'linux/arm64' });
      assert.equal(arm.platform, 'linux/arm64');
      assert.equal(await readFile(join(arm.rootfs, 'etc/which'), 'utf8'), 'arm64\n');
      assert.equal(arm.manifestDigest, (await layoutEntry(layout, 'arm64')).digest);
      assert.deepEqual(arm.config.cmd, ['/bin/true']);
      // Both platforms are recorded side by side.
      assert.deepEqual((await new ImageStore(home).get(ref)).map((r) => r.platform).sort(), ['linux/amd64', 'linux/arm64']);
    } finally {
      await cleanup();
    }
  });

  test('Docker manifest list (skopeo --all --format v2s2)', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const ref = `${registry}/${repos.list}:v1`;
      await expectAmd64Image(home, ref, 'application/vnd.docker.distribution.manifest.list.v2+json');
      const arm = await pullImage(ref, { home, platform: 'linux/arm64/v8' });
      assert.equal(await readFile(join(arm.rootfs, 'etc/which'), 'utf8'), 'arm64\n');
    } finally {
      await cleanup();
    }
  });

  test('zstd and uncompressed layers (re-encoded with the zstd/gzip CLIs, pushed with skopeo)', async () => {
    const { home, cleanup } = await tempHome();
    try {
      for (const [to, mediaType] of [
        ['zstd', 'application/vnd.oci.image.layer.v1.tar+zstd'],
        ['none', 'application/vnd.oci.image.layer.v1.tar'],
      ] as const) {
        await recompressImage(layout, 'amd64', `amd64-${to}`, to);
        const repo = uniqueRepo(`kinds-${to}`);
        // skopeo keeps zstd layers but always compresses plain tars for a registry: push those verbatim.
        if (to === 'zstd') await pushImage(layout, `amd64-${to}`, `${registry}/${repo}:v1`);
        else await pushLayoutVerbatim(layout, `amd64-${to}`, registry, repo, 'v1');
        const served = JSON.parse((await registryManifest(registry, repo, 'v1', ACCEPT_ALL)).body) as { layers: Array<{ mediaType: string }> };
        assert.deepEqual(served.layers.map((l) => l.mediaType), [mediaType, mediaType], 'the registry serves the re-encoded layers');
        const pulled = await pullImage(`${registry}/${repo}:v1`, { home });
        assert.equal(await readFile(join(pulled.rootfs, 'etc/which'), 'utf8'), 'amd64\n');
        assert.equal(await readFile(join(pulled.rootfs, 'etc/second'), 'utf8'), 'second layer\n');
      }
    } finally {
      await cleanup();
    }
  });

  test('the default platform is the host’s', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const pulled = await pullImage(`${registry}/${repos.index}:v1`, { home });
      assert.equal(pulled.platform, host);
    } finally {
      await cleanup();
    }
  });
});

describe('failures', () => {
  test('no matching platform: a clear error listing the available ones (attestations excluded)', async () => {
    const { home, cleanup } = await tempHome();
    try {
      for (const repo of [repos.index, repos.list]) {
        await assert.rejects(pullImage(`${registry}/${repo}:v1`, { home, platform: 'linux/s390x' }), (err: unknown) => {
          assert.ok(isMonocoreError(err, 'MC_OCI_NO_MATCHING_PLATFORM'), String(err));
          assert.deepEqual(err.details.available, ['linux/amd64', 'linux/arm64/v8']);
          assert.match(err.message, /linux\/s390x.*available: linux\/amd64, linux\/arm64\/v8/);
          assert.equal(err.retryable, false);
          return true;
        });
      }
      await assert.rejects(pullImage(`${registry}/${repos.index}:v1`, { home, platform: 'unknown/unknown' }), (err: unknown) =>
        isMonocoreError(err, 'MC_OCI_NO_MATCHING_PLATFORM'),
      );
      // A single-platform image for another architecture is refused the same way.
      await assert.rejects(pullImage(`${registry}/${repos.oci}:v1`, { home, platform: 'linux/arm64' }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_NO_MATCHING_PLATFORM'));
        assert.deepEqual(err.details.available, ['linux/amd64']);
        return true;
      });
      assert.deepEqual(await new ImageStore(home).list(), [], 'nothing was recorded');
    } finally {
      await cleanup();
    }
  });

  test('404: unknown tag and unknown repository give MC_OCI_MANIFEST_NOT_FOUND (not retryable)', async () => {
    const { home, cleanup } = await tempHome();
    try {
      for (const ref of [`${registry}/${repos.oci}:no-such-tag`, `${registry}/${uniqueRepo('never-pushed')}:v1`]) {
        await assert.rejects(pullImage(ref, { home }), (err: unknown) => {
          assert.ok(isMonocoreError(err, 'MC_OCI_MANIFEST_NOT_FOUND'), String(err));
          assert.match(err.message, /not found/);
          assert.equal(err.retryable, false);
          return true;
        });
      }
      const missing = `sha256:${'0'.repeat(64)}`;
      await assert.rejects(pullImage(`${registry}/${repos.oci}@${missing}`, { home }), (err: unknown) => isMonocoreError(err, 'MC_OCI_MANIFEST_NOT_FOUND'));
    } finally {
      await cleanup();
    }
  });
});

describe('warm pulls', () => {
  test('an image already present costs one HEAD manifest request; by digest, none', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry });
    const client = new RegistryClient();
    try {
      const ref = `${proxy.address}/${repos.index}:v1`;
      const cold = await pullImage(ref, { home, client });
      assert.ok(proxy.requests.some((r) => r.path.includes('/blobs/')), 'the cold pull downloaded blobs');
      proxy.requests.length = 0;
      const warm = await pullImage(ref, { home, client });
      const { cache: coldCache, unpackSeconds: _cold, blockSeconds: coldBlock, ...coldImage } = cold;
      const { cache: warmCache, unpackSeconds: _warm, blockSeconds: warmBlock, ...warmImage } = warm;
      assert.deepEqual(warmImage, coldImage);
      assert.deepEqual([coldCache, warmCache], ['cold', 'warm']);
      // The cold pull built the image's block filesystem; the warm one found it.
      assert.equal(typeof coldBlock, 'number');
      assert.equal(warmBlock, undefined);
      assert.deepEqual(
        proxy.requests.map((r) => `${r.method} ${r.path}`),
        [`HEAD /v2/${repos.index}/manifests/v1`],
      );
      const [record] = await new ImageStore(home).require(ref);
      proxy.requests.length = 0;
      const byDigest = await pullImage(`${proxy.address}/${repos.index}@${record!.digest}`, { home, client });
      assert.equal(byDigest.manifestDigest, cold.manifestDigest);
      // First pull by digest records the new reference (manifests come from the local store).
      assert.ok(proxy.requests.every((r) => !r.path.includes('/blobs/')), 'no blob is downloaded again');
      proxy.requests.length = 0;
      await pullImage(`${proxy.address}/${repos.index}@${record!.digest}`, { home, client });
      assert.deepEqual(proxy.requests, [], 'a warm pull by digest needs no request at all');
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('a tag that moved is pulled again; shared layers are not downloaded twice', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry });
    const client = new RegistryClient();
    const repo = uniqueRepo('moving-tag');
    try {
      await pushImage(layout, 'amd64', `${registry}/${repo}:v1`);
      const first = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      // Same first layers plus one more: only the new layer is fetched.
      await buildImage(layout, 'amd64-plus', { from: 'amd64', layers: [{ 'etc/third': '3\n' }], arch: 'amd64' });
      await pushImage(layout, 'amd64-plus', `${registry}/${repo}:v1`);
      proxy.requests.length = 0;
      const second = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      assert.notEqual(second.manifestDigest, first.manifestDigest);
      assert.equal(await readFile(join(second.rootfs, 'etc/third'), 'utf8'), '3\n');
      const blobGets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
      assert.equal(blobGets.length, 2, `only the new config and the new layer are downloaded: ${blobGets.map((r) => r.path).join(', ')}`);
      await stat(first.rootfs); // the old image's rootfs is still there until prune
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });
});
