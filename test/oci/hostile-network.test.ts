// A loopback proxy in front of the real registry flips bytes, cuts downloads,
// fails with 503/429 and demands bearer tokens; the client must verify, resume,
// retry and authenticate, and never store what it could not verify.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageStore, LocalContentStore, RegistryClient, closeDefaultRegistryClient, isMonocoreError, pullImage } from '@monocore/engine';
import { buildImage, layoutEntry, pushImage, readBlob, scratch, uniqueRepo } from './support/oci-fixtures.js';
import { ociTestEnv, tempHome } from './support/oci-env.js';
import { startRegistryProxy } from './support/registry-proxy.js';

const { registry } = ociTestEnv();
const work = await scratch();
const layout = join(work.dir, 'layout');
const repo = uniqueRepo('hostile');
/** The big (incompressible, ~1.5 MB gzipped) layer. */
let bigLayer = { digest: '', size: 0 };

before(async () => {
  await buildImage(layout, 'v1', {
    layers: [{ 'data/random.b64': randomBytes(1_100_000).toString('base64') }, { 'etc/hello': 'hello\n' }],
    cmd: ['/bin/sh'],
  });
  await pushImage(layout, 'v1', `${registry}/${repo}:v1`);
  const manifest = JSON.parse(await readBlob(layout, (await layoutEntry(layout, 'v1')).digest)) as { layers: Array<{ digest: string; size: number }> };
  bigLayer = manifest.layers.reduce((a, b) => (b.size > a.size ? b : a));
  assert.ok(bigLayer.size > 1_000_000, `the big layer is big (${bigLayer.size})`);
});

after(() => work.cleanup());

/** Fast retries so failure tests stay quick. */
const fastClient = (extra: ConstructorParameters<typeof RegistryClient>[0] = {}) => new RegistryClient({ retryBaseMs: 20, retryMaxMs: 200, ...extra });

async function ingestLeftovers(home: { ingestDir: string }): Promise<string[]> {
  try {
    return await readdir(home.ingestDir);
  } catch {
    return [];
  }
}

/** Entries under the image rootfs dir other than the lock dir (a finished or half-unpacked tree). */
async function rootfsLeftovers(home: { imageRootfsDir: string }): Promise<string[]> {
  try {
    return (await readdir(home.imageRootfsDir)).filter((n) => n !== '.locks');
  } catch {
    return [];
  }
}

describe('integrity', () => {
  test('a blob corrupted in transit is rejected with MC_OCI_DIGEST_MISMATCH and not cached', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, corruptBlob: (d) => d === bigLayer.digest });
    const client = fastClient();
    try {
      await assert.rejects(pullImage(`${proxy.address}/${repo}:v1`, { home, client }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_DIGEST_MISMATCH'), String(err));
        assert.equal(err.details.digest, bigLayer.digest);
        assert.match(err.message, /not stored/);
        return true;
      });
      const store = new LocalContentStore(home);
      assert.equal(await store.info(bigLayer.digest), undefined, 'the corrupt blob is not in the store');
      // Only the corrupt blob's: a download the failure cut short keeps its partial ingest to
      // resume (on a loaded machine the small layer's may still be in flight; CI saw one).
      assert.ok(!(await ingestLeftovers(home)).includes(bigLayer.digest.slice('sha256:'.length)), 'no partial ingest is kept for a corrupt blob');
      assert.deepEqual(await new ImageStore(home).list(), [], 'no image was recorded');
      assert.deepEqual(await rootfsLeftovers(home), [], 'no rootfs or unpack temp dir is left');
      // The same home then pulls fine from an honest path.
      const ok = await pullImage(`${proxy.address.replace(/.*/, registry)}/${repo}:v1`, { home, client });
      assert.equal(await readFile(join(ok.rootfs, 'etc/hello'), 'utf8'), 'hello\n');
      assert.equal((await store.info(bigLayer.digest))?.size, bigLayer.size);
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('a corrupt last layer, found while earlier layers unpack, fails the pull with its own error and leaves no rootfs', async () => {
    const { home, cleanup } = await tempHome();
    const manifest = JSON.parse(await readBlob(layout, (await layoutEntry(layout, 'v1')).digest)) as { layers: Array<{ digest: string }> };
    const last = manifest.layers[manifest.layers.length - 1]!.digest;
    assert.notEqual(last, manifest.layers[0]!.digest);
    // One download at a time: layer 1 is committed (and starts unpacking) before the last one arrives corrupt.
    const proxy = await startRegistryProxy({ upstream: registry, corruptBlob: (d) => d === last });
    const client = fastClient();
    try {
      await assert.rejects(pullImage(`${proxy.address}/${repo}:v1`, { home, client, concurrency: 1 }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_DIGEST_MISMATCH'), String(err));
        assert.equal(err.details.digest, last);
        return true;
      });
      assert.deepEqual(await rootfsLeftovers(home), [], 'no rootfs or unpack temp dir is left');
      assert.deepEqual(await new ImageStore(home).list(), [], 'no image was recorded');
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('a download cut midway resumes with a Range request', async () => {
    const { home, cleanup } = await tempHome();
    const cutAt = 400_000;
    const proxy = await startRegistryProxy({ upstream: registry, cutBlobAfter: (d, attempt) => (d === bigLayer.digest && attempt === 1 ? cutAt : undefined) });
    const client = fastClient();
    try {
      const pulled = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(bigLayer.digest));
      assert.equal(gets.length, 2, 'one cut request and one resumed request');
      assert.equal(gets[0]!.headers.range, undefined);
      const m = /^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range));
      assert.ok(m, `the second request asks for a range: ${String(gets[1]!.headers.range)}`);
      const start = Number(m[1]);
      assert.ok(start > 0 && start <= cutAt, `resumes from the bytes already received (${start})`);
      assert.equal((await new LocalContentStore(home).info(bigLayer.digest))?.size, bigLayer.size);
      assert.equal((await readFile(join(pulled.rootfs, 'data/random.b64'), 'utf8')).length, Math.ceil(1_100_000 / 3) * 4);
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('a partial ingest left by an earlier run is resumed, and a bad one is discarded', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry });
    const client = fastClient();
    try {
      // A previous run died after 300000 good bytes (taken from the registry itself).
      const res = await fetch(`http://${registry}/v2/${repo}/blobs/${bigLayer.digest}`);
      const full = Buffer.from(await res.arrayBuffer());
      const dir = join(home.ingestDir, bigLayer.digest.slice(7));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'data'), full.subarray(0, 300_000));
      await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(bigLayer.digest));
      assert.deepEqual(gets.map((g) => g.headers.range), ['bytes=300000-']);

      // Garbage left behind: the resumed blob fails its digest, is thrown away, and one fresh download succeeds.
      const { home: home2, cleanup: cleanup2 } = await tempHome();
      try {
        const dir2 = join(home2.ingestDir, bigLayer.digest.slice(7));
        await mkdir(dir2, { recursive: true });
        await writeFile(join(dir2, 'data'), randomBytes(300_000));
        proxy.requests.length = 0;
        await pullImage(`${proxy.address}/${repo}:v1`, { home: home2, client });
        const gets2 = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(bigLayer.digest));
        assert.deepEqual(gets2.map((g) => g.headers.range), ['bytes=300000-', undefined]);
      } finally {
        await cleanup2();
      }
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });
});

describe('retries', () => {
  test('503 and 429 are retried (honouring Retry-After) and the pull succeeds', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, failFirst: { count: 2, status: 503 } });
    const proxy429 = await startRegistryProxy({ upstream: registry, failFirst: { count: 1, status: 429, retryAfter: 1 } });
    const client = fastClient();
    try {
      await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      assert.equal(proxy.requests[0]!.method, 'HEAD');
      assert.equal(proxy.requests[2]!.path, proxy.requests[0]!.path, 'the same request was retried');
      const t0 = Date.now();
      await pullImage(`${proxy429.address}/${repo}:v1`, { home, client });
      assert.ok(Date.now() - t0 >= 190, 'waited for Retry-After (capped by retryMaxMs = 200 ms)');
    } finally {
      await client.close();
      await proxy.close();
      await proxy429.close();
      await cleanup();
    }
  });

  test('a registry that keeps failing gives MC_OCI_TOO_MANY_RETRIES (retryable); a closed port MC_OCI_REGISTRY_UNREACHABLE', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, failFirst: { count: 1000, status: 502 } });
    const client = fastClient({ maxAttempts: 3 });
    try {
      await assert.rejects(pullImage(`${proxy.address}/${repo}:v1`, { home, client }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_TOO_MANY_RETRIES'), String(err));
        assert.equal(err.retryable, true);
        assert.match(err.message, /3 attempts.*HTTP 502/);
        return true;
      });
      assert.equal(proxy.requests.length, 3);
      const closedPort = proxy.address;
      await proxy.close();
      await assert.rejects(pullImage(`${closedPort}/${repo}:v1`, { home, client }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_REGISTRY_UNREACHABLE'), String(err));
        assert.equal(err.retryable, true);
        assert.match(err.message, /ECONNREFUSED/);
        return true;
      });
    } finally {
      await client.close();
      await cleanup();
    }
  });
});

describe('registry quirks', () => {
  test('a HEAD without Docker-Content-Digest falls back to GET and still detects a warm image', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, headWithoutDigest: true });
    const client = fastClient();
    try {
      const cold = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      proxy.requests.length = 0;
      const warm = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      assert.equal(warm.manifestDigest, cold.manifestDigest);
      assert.deepEqual(
        proxy.requests.map((r) => `${r.method} ${r.path}`),
        [`HEAD /v2/${repo}/manifests/v1`, `GET /v2/${repo}/manifests/v1`],
      );
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });
});

describe('authentication', () => {
  test('bearer token flow with credentials; the token is cached per registry and scope', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, auth: { username: 'alice', password: 's3cret' } });
    const client = fastClient({ credentials: { [proxy.address]: { username: 'alice', password: 's3cret' } } });
    try {
      const pulled = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      assert.equal(await readFile(join(pulled.rootfs, 'etc/hello'), 'utf8'), 'hello\n');
      assert.equal(proxy.tokenRequests.length, 1, 'one token for the whole pull (manifest, config, layers)');
      const tr = proxy.tokenRequests[0]!;
      assert.equal(tr.headers.authorization, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
      assert.match(tr.path, /service=monocore-test/);
      assert.match(decodeURIComponent(tr.path), new RegExp(`scope=repository:${repo}:pull`));
      // Warm pull with the same client: the cached token is sent up front, no new token, no 401.
      proxy.requests.length = 0;
      await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      assert.equal(proxy.tokenRequests.length, 1);
      assert.equal(proxy.requests.length, 1);
      assert.match(String(proxy.requests[0]!.headers.authorization), /^Bearer /);
      assert.equal(client.tokenRequests, 1);
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('blob redirects are followed without leaking the registry token to the other origin', async () => {
    const { home, cleanup } = await tempHome();
    const cdn = await startRegistryProxy({ upstream: registry });
    const proxy = await startRegistryProxy({ upstream: registry, auth: {}, redirectBlobsTo: cdn.address });
    const client = fastClient();
    try {
      const pulled = await pullImage(`${proxy.address}/${repo}:v1`, { home, client });
      assert.equal(await readFile(join(pulled.rootfs, 'etc/hello'), 'utf8'), 'hello\n');
      const cdnGets = cdn.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
      assert.equal(cdnGets.length, 3, 'config and both layers came from the redirect target');
      assert.ok(cdnGets.every((r) => r.headers.authorization === undefined), 'no Authorization header crossed origins');
      assert.ok(proxy.requests.some((r) => r.path.includes('/blobs/') && /^Bearer /.test(String(r.headers.authorization))));
    } finally {
      await client.close();
      await proxy.close();
      await cdn.close();
      await cleanup();
    }
  });

  test('anonymous or wrong credentials: MC_OCI_UNAUTHORIZED (not retryable)', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, auth: { username: 'alice', password: 's3cret' } });
    const empty = await scratch();
    const anon = fastClient({ credentialsResolver: () => undefined });
    const wrong = fastClient({ credentials: { [proxy.address]: { username: 'alice', password: 'nope' } } });
    try {
      for (const client of [anon, wrong]) {
        await assert.rejects(pullImage(`${proxy.address}/${repo}:v1`, { home, client }), (err: unknown) => {
          assert.ok(isMonocoreError(err, 'MC_OCI_UNAUTHORIZED'), String(err));
          assert.equal(err.retryable, false);
          return true;
        });
      }
    } finally {
      await anon.close();
      await wrong.close();
      await empty.cleanup();
      await proxy.close();
      await cleanup();
    }
  });

  test('credentials from ~/.docker/config.json (auths + base64 auth) and MONOCORE_REGISTRY_AUTH', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, auth: { username: 'bob', password: 'p:w' } });
    const dockerDir = await scratch();
    try {
      await writeFile(
        join(dockerDir.dir, 'config.json'),
        JSON.stringify({ auths: { [`http://${proxy.address}`]: { auth: Buffer.from('bob:p:w').toString('base64') } } }),
      );
      const viaDocker = RegistryClient.fromEnv({ DOCKER_CONFIG: dockerDir.dir }, { retryBaseMs: 20 });
      await pullImage(`${proxy.address}/${repo}:v1`, { home, client: viaDocker });
      await viaDocker.close();
      const viaEnv = RegistryClient.fromEnv(
        { DOCKER_CONFIG: join(dockerDir.dir, 'none'), MONOCORE_REGISTRY_AUTH: JSON.stringify({ [proxy.address]: { username: 'bob', password: 'p:w' } }) },
        { retryBaseMs: 20 },
      );
      const { home: home2, cleanup: c2 } = await tempHome();
      await pullImage(`${proxy.address}/${repo}:v1`, { home: home2, client: viaEnv });
      await viaEnv.close();
      await c2();
      assert.equal(proxy.tokenRequests.length, 2);
    } finally {
      await dockerDir.cleanup();
      await proxy.close();
      await cleanup();
    }
  });
});

describe('mirrors and plain HTTP', () => {
  test('MONOCORE_REGISTRY_MIRRORS serves docker.io images from a loopback mirror', async () => {
    const { home, cleanup } = await tempHome();
    const name = `mctest-${randomBytes(4).toString('hex')}`;
    await pushImage(layout, 'v1', `${registry}/library/${name}:v1`);
    const proxy = await startRegistryProxy({ upstream: registry });
    const client = RegistryClient.fromEnv({ MONOCORE_REGISTRY_MIRRORS: `docker.io=http://${proxy.address}`, DOCKER_CONFIG: '/nonexistent' });
    try {
      const pulled = await pullImage(`${name}:v1`, { home, client });
      assert.equal(pulled.reference, `docker.io/library/${name}:v1`);
      assert.ok(proxy.requests.some((r) => r.path === `/v2/library/${name}/manifests/v1`));
      assert.equal(await readFile(join(pulled.rootfs, 'etc/hello'), 'utf8'), 'hello\n');
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('$MONOCORE_HOME/registries.toml: a docker.io mirror that wants credentials', async () => {
    const { home, cleanup } = await tempHome();
    const name = `mctest-${randomBytes(4).toString('hex')}`;
    await pushImage(layout, 'v1', `${registry}/library/${name}:v1`);
    const proxy = await startRegistryProxy({ upstream: registry, auth: { username: 'carol', password: 'pw' } });
    try {
      await writeFile(
        home.registriesFile,
        [`[mirrors]`, `"docker.io" = ["http://${proxy.address}"]`, `[auth."${proxy.address}"]`, `username = "carol"`, `password = "pw"`, ''].join('\n'),
      );
      const pulled = await pullImage(`${name}:v1`, { home });
      assert.equal(pulled.reference, `docker.io/library/${name}:v1`);
      assert.equal(proxy.tokenRequests.length, 1);
      await closeDefaultRegistryClient();
      await writeFile(home.registriesFile, '[mirrors]\n"docker.io" = ["ftp://x"]\n');
      await assert.rejects(pullImage(`${name}:v2`, { home }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_CONFIG_INVALID'), String(err));
        assert.match(err.message, /registries\.toml: mirrors\.docker\.io\.0: must be an http/);
        return true;
      });
    } finally {
      await closeDefaultRegistryClient();
      await proxy.close();
      await cleanup();
    }
  });

  test('plain HTTP to a non-loopback host is refused unless configured insecure', () => {
    assert.throws(
      () => RegistryClient.fromEnv({ MONOCORE_REGISTRY_MIRRORS: 'docker.io=http://mirror.example.invalid:5000' }),
      (err: unknown) => isMonocoreError(err, 'MC_OCI_INSECURE_REGISTRY') && /MONOCORE_INSECURE_REGISTRIES/.test(err.message),
    );
    const ok = RegistryClient.fromEnv({
      MONOCORE_REGISTRY_MIRRORS: 'docker.io=http://mirror.example.invalid:5000',
      MONOCORE_INSECURE_REGISTRIES: 'mirror.example.invalid:5000',
    });
    void ok.close();
    assert.throws(() => RegistryClient.fromEnv({ MONOCORE_REGISTRY_MIRRORS: 'docker.io' }), (err: unknown) => isMonocoreError(err, 'MC_USAGE'));
  });
});
