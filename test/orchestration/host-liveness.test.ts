// HostLiveness against the real test Redis, with an injected monotonic clock: the
// fence decision, renewal by send time, a lease lost from Redis, a reassigned
// service, reclaim once Redis answers, and Redis unreachable. No VMs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Keys, leaseTiming } from '@monocore/engine';
import { HostLiveness } from '@monocore/worker';
import { TEST_REDIS_DBS } from '../support/env.js';
import { Partition } from '../support/partition.js';
import { freshDb, quiet } from './support.js';

const DB = TEST_REDIS_DBS['orchestration/host-liveness'];
const timing = leaseTiming(4000); // renew 1 s, fence after 3 s, margin 1 s
const conns: Redis[] = [];
after(async () => {
  for (const c of conns) await c.quit().catch(() => c.disconnect());
});

async function setup(opts: { redisUrl?: string } = {}) {
  const url = opts.redisUrl ?? (await freshDb(DB));
  const redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => undefined);
  conns.push(redis);
  await redis.connect().catch(() => undefined);
  let clock = 1000;
  const fenced: Array<{ name: string; epoch: number; why: string }> = [];
  const reclaimed: Array<{ name: string; epoch: number }> = [];
  const liveness = new HostLiveness({
    info: { id: 'h1', cpus: 4, ramMib: 1024, backends: ['qemu'] },
    redis,
    timing,
    logger: quiet,
    usage: () => ({ freeCpus: 4, freeRamMib: 1024 }),
    fence: (name, epoch, why) => fenced.push({ name, epoch, why }),
    reclaim: async (name, epoch) => {
      reclaimed.push({ name, epoch });
    },
    now: () => clock,
  });
  const assign = (name: string, host: string, epoch: number) => redis.hset(Keys.service(name), { host, epoch, status: 'running', desired: 'running' });
  return { redis, liveness, fenced, reclaimed, assign, advance: (ms: number) => (clock += ms) };
}

test('a lease renewed in time is kept; one not renewed for the fence time is fenced locally, before Redis expires it', async () => {
  const { redis, liveness, fenced, assign, advance } = await setup();
  await assign('s1', 'h1', 3);
  assert.equal(await liveness.acquire('s1', 3), 'held');
  assert.equal(liveness.holds('s1', 3), true);
  assert.equal(liveness.holds('s1', 4), false, 'another epoch is not held');

  // Renewals move the deadline: time passes in steps shorter than the fence time.
  for (let i = 0; i < 5; i++) {
    advance(timing.renewEveryMs);
    await liveness.tick();
    liveness.checkDeadlines();
  }
  assert.equal(fenced.length, 0, 'renewed every period: never fenced');
  assert.ok((await redis.pttl(Keys.lease('s1'))) > timing.leaseMs - 500, 'the renewal reached Redis');

  // No renewal for fenceAfterMs (the clock jumps, no tick): fenced, though Redis still has the lease.
  advance(timing.fenceAfterMs - 1);
  liveness.checkDeadlines();
  assert.equal(fenced.length, 0, 'one millisecond before the fence time: still held');
  advance(1);
  liveness.checkDeadlines();
  assert.equal(fenced.length, 1);
  assert.equal(fenced[0]!.name, 's1');
  assert.match(fenced[0]!.why, /not renewed for 3000 ms/);
  assert.equal(liveness.holds('s1', 3), false);
  assert.equal(await redis.get(Keys.lease('s1')), 'h1:3', 'the fence does not release the lease: Redis lets it expire');
  liveness.checkDeadlines();
  assert.equal(fenced.length, 1, 'fenced once');
});

test('a renewal counts from when it was sent, however late it answers', async () => {
  const { liveness, fenced, assign, advance } = await setup();
  await assign('s2', 'h1', 1);
  await liveness.acquire('s2', 1);
  advance(2000);
  const tick = liveness.tick(); // sent at t+2000
  advance(1500); // the answer "arrives" later: the deadline is still 2000 + fence time
  await tick;
  advance(timing.fenceAfterMs - 1500 - 1);
  liveness.checkDeadlines();
  assert.equal(fenced.length, 0);
  advance(1);
  liveness.checkDeadlines();
  assert.equal(fenced.length, 1, 'fenced fenceAfterMs after the SEND time of the last renewal');
});

test('a lease lost from Redis is taken again while the service is still assigned here; a reassigned one is fenced at once', async () => {
  const { redis, liveness, fenced, assign, advance } = await setup();
  await assign('s3', 'h1', 5);
  await assign('s4', 'h1', 5);
  await liveness.acquire('s3', 5);
  await liveness.acquire('s4', 5);
  await redis.del(Keys.lease('s3')); // e.g. the last second before a Redis crash was lost
  await assign('s4', 'h2', 6); // moved to another host meanwhile
  advance(timing.renewEveryMs);
  await liveness.tick();
  assert.equal(await redis.get(Keys.lease('s3')), 'h1:5', 's3 taken again (still assigned here)');
  assert.equal(liveness.holds('s3', 5), true);
  assert.equal(fenced.length, 1);
  assert.equal(fenced[0]!.name, 's4');
  assert.match(fenced[0]!.why, /service reassigned/);
  assert.equal(await redis.get(Keys.lease('s4')), 'h1:5', 'renew-lease-2 refused to extend the moved service\'s lease');
});

test('fenced services are handed to reclaim once Redis answers, then forgotten', async () => {
  const { liveness, fenced, reclaimed, assign, advance } = await setup();
  await assign('s5', 'h1', 2);
  await liveness.acquire('s5', 2);
  advance(timing.fenceAfterMs);
  liveness.checkDeadlines();
  assert.equal(fenced.length, 1);
  assert.deepEqual(liveness.fenced(), ['s5']);
  await liveness.tick(); // Redis answers
  assert.deepEqual(reclaimed, [{ name: 's5', epoch: 2 }]);
  assert.deepEqual(liveness.fenced(), []);
  await liveness.release('s5', 2);
});

test('Redis unreachable from this host (a frozen forwarder): a tick gives up after renewTimeoutMs, the local deadline fences', async () => {
  const url = await freshDb(DB);
  const target = new URL(url);
  const partition = await Partition.start(`${target.hostname}:${target.port}`);
  try {
    const { liveness, fenced, assign, advance } = await setup({ redisUrl: `redis://127.0.0.1:${partition.port}${target.pathname}` });
    await assign('s6', 'h1', 1);
    assert.equal(await liveness.acquire('s6', 1), 'held');
    partition.cut();
    const t0 = performance.now();
    advance(timing.renewEveryMs);
    await liveness.tick(); // must neither hang nor throw
    const took = performance.now() - t0;
    // A hang (waiting for the frozen peer) would take until the partition heals; the bound only tells a hang apart.
    assert.ok(took < 20 * timing.renewTimeoutMs, `the tick gave up instead of hanging (${Math.round(took)} ms)`);
    assert.equal(fenced.length, 0);
    advance(timing.fenceAfterMs - timing.renewEveryMs);
    liveness.checkDeadlines();
    assert.equal(fenced.length, 1, 'fenced by the local deadline while Redis is unreachable');
    partition.heal();
  } finally {
    await partition.close();
  }
});
