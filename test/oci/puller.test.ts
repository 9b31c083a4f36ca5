// The pull worker against real Redis (BullMQ) and the real loopback registry:
// job progress per layer, the result, coalesced duplicate jobs, and which
// failures BullMQ retries.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE_PREFIX, QueueNames, RegistryClient, type PullJobData, type PullJobResult } from '@monocore/engine';
import { startPuller, type PullJobProgress } from '@monocore/puller';
import { buildImage, layoutEntry, pushImage, readBlob, scratch, uniqueRepo } from './support/oci-fixtures.js';
import { ociTestEnv, tempHome } from './support/oci-env.js';
import { startRegistryProxy } from './support/registry-proxy.js';

const { registry, redisUrl } = ociTestEnv();
const work = await scratch();
const layout = join(work.dir, 'layout');
const repo = uniqueRepo('puller');
let layerDigests: string[] = [];

before(async () => {
  await buildImage(layout, 'v1', { layers: [{ 'data/x.b64': randomBytes(400_000).toString('base64') }, { 'etc/puller': 'yes\n' }], cmd: ['/bin/sh'] });
  await pushImage(layout, 'v1', `${registry}/${repo}:v1`);
  layerDigests = (JSON.parse(await readBlob(layout, (await layoutEntry(layout, 'v1')).digest)) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest);
});

after(() => work.cleanup());

async function harness() {
  const hostId = `test-${randomBytes(4).toString('hex')}`;
  const { home, cleanup } = await tempHome();
  const proxy = await startRegistryProxy({ upstream: registry, throttleBlobMs: 10 });
  const client = new RegistryClient({ maxAttempts: 2, retryBaseMs: 20, retryMaxMs: 100 });
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const puller = await startPuller({ connection, hostId, home, concurrency: 2, client });
  const queue = new Queue<PullJobData, PullJobResult>(QueueNames.pull(hostId), { connection, prefix: QUEUE_PREFIX });
  const eventsConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const events = new QueueEvents(QueueNames.pull(hostId), { connection: eventsConnection, prefix: QUEUE_PREFIX });
  await events.waitUntilReady();
  return {
    home,
    proxy,
    queue,
    events,
    async close() {
      await puller.close();
      await events.close();
      await eventsConnection.quit();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await connection.quit();
      await client.close();
      await proxy.close();
      await cleanup();
    },
  };
}

describe('puller worker (BullMQ + Redis)', () => {
  test('a pull job reports per-layer progress and returns reference, digest and rootfs', async () => {
    const h = await harness();
    try {
      const progress: PullJobProgress[] = [];
      h.events.on('progress', ({ data }) => progress.push(data as unknown as PullJobProgress));
      const job = await h.queue.add('pull', { image: `${h.proxy.address}/${repo}:v1` });
      const result = await job.waitUntilFinished(h.events, 60_000);
      assert.equal(result.reference, `${h.proxy.address}/${repo}:v1`);
      assert.match(result.manifestDigest, /^sha256:[a-f0-9]{64}$/);
      assert.equal(await readFile(join(result.rootfs, 'etc/puller'), 'utf8'), 'yes\n');
      assert.ok(progress.length >= 2, `progress events: ${progress.length}`);
      const last = progress.at(-1)!;
      assert.equal(last.phase, 'done');
      assert.deepEqual(last.layers.map((l) => l.digest), layerDigests);
      assert.ok(last.layers.every((l) => l.done === l.total && l.total > 0));
      assert.equal(last.done, last.total);
      assert.ok(progress.some((p) => p.phase === 'downloading'), 'downloading progress was reported');
      assert.ok(progress.some((p) => p.phase === 'unpacking'), 'unpacking progress was reported');
      const stored = await h.queue.getJob(job.id!);
      assert.deepEqual(stored?.progress, last, 'the job keeps its latest progress');
    } finally {
      await h.close();
    }
  });

  test('concurrent jobs for one image on one host coalesce into one download', async () => {
    const h = await harness();
    try {
      const image = `${h.proxy.address}/${repo}:v1`;
      const jobs = await Promise.all([h.queue.add('pull', { image }), h.queue.add('pull', { image }), h.queue.add('pull', { image, service: 'b' })]);
      const results = await Promise.all(jobs.map((j) => j.waitUntilFinished(h.events, 60_000)));
      assert.equal(new Set(results.map((r) => r.manifestDigest)).size, 1);
      for (const d of layerDigests) {
        assert.equal(h.proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(d)).length, 1, `layer ${d} fetched once`);
      }
    } finally {
      await h.close();
    }
  });

  test('a non-retryable failure (not found) fails at once; a retryable one (unreachable) uses the attempts', async () => {
    const h = await harness();
    try {
      const missing = await h.queue.add('pull', { image: `${h.proxy.address}/${repo}:nope` }, { attempts: 3, backoff: { type: 'fixed', delay: 10 } });
      await assert.rejects(missing.waitUntilFinished(h.events, 30_000), /MC_OCI_MANIFEST_NOT_FOUND/);
      const m = await h.queue.getJob(missing.id!);
      assert.equal(m?.attemptsMade, 1, 'not retried: retrying cannot help');
      assert.match(m?.failedReason ?? '', /MC_OCI_MANIFEST_NOT_FOUND: .*not found/);

      const badPlatform = await h.queue.add('pull', { image: `${h.proxy.address}/${repo}:v1`, platform: 'linux/s390x' }, { attempts: 3 });
      await assert.rejects(badPlatform.waitUntilFinished(h.events, 30_000), /MC_OCI_NO_MATCHING_PLATFORM.*available: linux\/amd64/);
      assert.equal((await h.queue.getJob(badPlatform.id!))?.attemptsMade, 1);

      const invalid = await h.queue.add('pull', { image: 'x', bogus: true } as unknown as PullJobData, { attempts: 3 });
      await assert.rejects(invalid.waitUntilFinished(h.events, 30_000), /invalid pull job data/);
      assert.equal((await h.queue.getJob(invalid.id!))?.attemptsMade, 1);

      const closed = await startRegistryProxy({ upstream: registry });
      const addr = closed.address;
      await closed.close();
      const unreachable = await h.queue.add('pull', { image: `${addr}/${repo}:v1` }, { attempts: 2, backoff: { type: 'fixed', delay: 10 } });
      await assert.rejects(unreachable.waitUntilFinished(h.events, 30_000), /MC_OCI_REGISTRY_UNREACHABLE/);
      assert.equal((await h.queue.getJob(unreachable.id!))?.attemptsMade, 2, 'retried: the registry may come back');
    } finally {
      await h.close();
    }
  });

  test('the monocore-puller bin serves the host queue from env and exits 0 on SIGTERM', async () => {
    const hostId = `bin-${randomBytes(4).toString('hex')}`;
    const { home, cleanup } = await tempHome();
    const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue<PullJobData, PullJobResult>(QueueNames.pull(hostId), { connection, prefix: QUEUE_PREFIX });
    const eventsConnection = connection.duplicate();
    const events = new QueueEvents(QueueNames.pull(hostId), { connection: eventsConnection, prefix: QUEUE_PREFIX });
    const bin = fileURLToPath(new URL('../../../apps/puller/dist/main.js', import.meta.url));
    const child = spawn(process.execPath, [bin], {
      env: { ...process.env, MONOCORE_REDIS_URL: redisUrl, MONOCORE_HOST_ID: hostId, MONOCORE_HOME: home.root },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await events.waitUntilReady();
      const job = await queue.add('pull', { image: `${registry}/${repo}:v1` });
      const result = await job.waitUntilFinished(events, 60_000);
      assert.equal(await readFile(join(result.rootfs, 'etc/puller'), 'utf8'), 'yes\n');
      assert.match(stderr, new RegExp(`queue pull-${hostId}`));
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    } finally {
      child.kill('SIGKILL');
      await events.close();
      await eventsConnection.quit();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await connection.quit();
      await cleanup();
    }
  });
});
