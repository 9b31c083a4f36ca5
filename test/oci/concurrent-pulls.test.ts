// Concurrent pulls of one image, in one process and in two processes sharing a
// MONOCORE_HOME, download each blob once; a dead writer's lock is broken; a
// download killed with SIGKILL is resumed by the next pull.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ImageStore, LocalContentStore, RegistryClient, pullImage } from '@monocore/engine';
import { buildImage, layoutEntry, pushImage, readBlob, scratch, uniqueRepo } from './support/oci-fixtures.js';
import { ociTestEnv, tempHome } from './support/oci-env.js';
import { startRegistryProxy, type LoggedRequest } from './support/registry-proxy.js';

const { registry } = ociTestEnv();
const child = fileURLToPath(new URL('./support/pull-child.js', import.meta.url));
const work = await scratch();
const layout = join(work.dir, 'layout');
const repoA = uniqueRepo('concurrent-a');
const repoB = uniqueRepo('concurrent-b');
let layers: Array<{ digest: string; size: number }> = [];

before(async () => {
  await buildImage(layout, 'v1', {
    layers: [{ 'data/a.b64': randomBytes(600_000).toString('base64') }, { 'data/b.b64': randomBytes(300_000).toString('base64') }, { 'etc/c': 'c\n' }],
  });
  await pushImage(layout, 'v1', `${registry}/${repoA}:v1`);
  await pushImage(layout, 'v1', `${registry}/${repoB}:v1`);
  layers = (JSON.parse(await readBlob(layout, (await layoutEntry(layout, 'v1')).digest)) as { layers: typeof layers }).layers;
});

after(() => work.cleanup());

function blobGets(requests: LoggedRequest[], digest: string): LoggedRequest[] {
  return requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`));
}

function runChild(home: string, reference: string): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; kill(): void; pid: number } {
  const p = spawn(process.execPath, [child, home, reference], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return {
    pid: p.pid!,
    kill: () => p.kill('SIGKILL'),
    done: new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout, stderr }))),
  };
}

describe('concurrent pulls', () => {
  test('in one process: two pulls of one image, and of two names sharing its layers, fetch each blob once', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, throttleBlobMs: 5 });
    const client = new RegistryClient();
    try {
      const [a1, a2, b] = await Promise.all([
        pullImage(`${proxy.address}/${repoA}:v1`, { home, client }),
        pullImage(`${proxy.address}/${repoA}:v1`, { home, client }),
        pullImage(`${proxy.address}/${repoB}:v1`, { home, client }),
      ]);
      // The same image; one pull did the work, the other joined it.
      // Which of the pulls of this image (a1 or b, same manifest) unpacks and builds the block image is a race.
      const { cache: c1, unpackSeconds: _u1, blockSeconds: _b1, ...image1 } = a1;
      const { cache: c2, unpackSeconds: _u2, blockSeconds: _b2, ...image2 } = a2;
      assert.deepEqual(image1, image2);
      assert.deepEqual([c1, c2].sort(), ['cold', 'joined']);
      assert.equal(b.manifestDigest, a1.manifestDigest);
      assert.equal(b.rootfs, a1.rootfs, 'one rootfs per image, shared');
      for (const l of layers) assert.equal(blobGets(proxy.requests, l.digest).length, 1, `layer ${l.digest} downloaded once`);
      assert.equal((await new ImageStore(home).list()).length, 2);
    } finally {
      await client.close();
      await proxy.close();
      await cleanup();
    }
  });

  test('two processes on one MONOCORE_HOME: each blob is downloaded once and the store is intact', async () => {
    const { home, cleanup } = await tempHome();
    // Slow blobs so that both processes are inside the download at the same time.
    const proxy = await startRegistryProxy({ upstream: registry, throttleBlobMs: 15 });
    try {
      const ref = `${proxy.address}/${repoA}:v1`;
      const [r1, r2] = await Promise.all([runChild(home.root, ref).done, runChild(home.root, ref).done]);
      assert.equal(r1.code, 0, r1.stderr);
      assert.equal(r2.code, 0, r2.stderr);
      const p1 = JSON.parse(r1.stdout) as { manifestDigest: string; rootfs: string };
      const p2 = JSON.parse(r2.stdout) as { manifestDigest: string; rootfs: string };
      assert.equal(p1.manifestDigest, p2.manifestDigest);
      assert.equal(p1.rootfs, p2.rootfs);
      for (const l of layers) assert.equal(blobGets(proxy.requests, l.digest).length, 1, `layer ${l.digest} downloaded once across processes`);
      const store = new LocalContentStore(home);
      for (const l of layers) {
        const info = await store.info(l.digest);
        assert.equal(info?.size, l.size);
        assert.equal((await stat(info.path)).mode & 0o777, 0o444, 'committed blobs are read-only');
      }
      assert.equal(await readFile(join(p1.rootfs, 'etc/c'), 'utf8'), 'c\n');
    } finally {
      await proxy.close();
      await cleanup();
    }
  });

  test('a lock left by a dead process is broken', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const dead = runChild('/nonexistent', 'x');
      await dead.done; // exits at once (usage error): its pid is now free
      for (const l of layers) {
        const dir = join(home.ingestDir, l.digest.slice(7));
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'lock'), JSON.stringify({ pid: dead.pid, host: hostname(), since: new Date().toISOString() }));
      }
      const pulled = await pullImage(`${registry}/${repoA}:v1`, { home });
      assert.equal(await readFile(join(pulled.rootfs, 'etc/c'), 'utf8'), 'c\n');
    } finally {
      await cleanup();
    }
  });

  test('a lock whose holder stopped refreshing it (frozen, or on another host) is broken', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const old = new Date(Date.now() - 120_000);
      for (const l of layers) {
        const dir = join(home.ingestDir, l.digest.slice(7));
        await mkdir(dir, { recursive: true });
        const lock = join(dir, 'lock');
        await writeFile(lock, JSON.stringify({ pid: process.ppid, host: 'another-host', since: old.toISOString() }));
        await utimes(lock, old, old);
      }
      const pulled = await pullImage(`${registry}/${repoA}:v1`, { home });
      assert.equal(await readFile(join(pulled.rootfs, 'etc/c'), 'utf8'), 'c\n');
    } finally {
      await cleanup();
    }
  });

  test('a pull killed with SIGKILL mid-download is resumed by the next pull', async () => {
    const { home, cleanup } = await tempHome();
    const proxy = await startRegistryProxy({ upstream: registry, throttleBlobMs: 40 });
    try {
      const big = layers.reduce((a, b) => (b.size > a.size ? b : a));
      const ref = `${proxy.address}/${repoA}:v1`;
      const c = runChild(home.root, ref);
      const data = join(home.ingestDir, big.digest.slice(7), 'data');
      const deadline = performance.now() + 20_000;
      let size = 0;
      while (performance.now() < deadline) {
        size = (await stat(data).catch(() => undefined))?.size ?? 0;
        if (size > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(size > 0 && size < big.size, 'the child was killed mid-download');
      c.kill();
      await c.done;
      assert.equal(await new LocalContentStore(home).info(big.digest), undefined, 'nothing half-written became a blob');
      proxy.requests.length = 0;
      await pullImage(ref, { home });
      const gets = blobGets(proxy.requests, big.digest);
      assert.equal(gets.length, 1);
      const m = /^bytes=(\d+)-$/.exec(String(gets[0]!.headers.range));
      assert.ok(m && Number(m[1]) >= size, `resumed with Range from the bytes on disk (${String(gets[0]!.headers.range)})`);
    } finally {
      await proxy.close();
      await cleanup();
    }
  });
});
