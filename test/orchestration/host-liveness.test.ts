// HostLiveness against the real test Redis, with an injected monotonic clock: the
// fence decision, renewal by send time, a lease lost from Redis, a reassigned
// service, reclaim once Redis answers, and Redis unreachable. Then a busy host
// (docs/ORCHESTRATION.md "A busy host"): late rounds, rounds that give up, and an
// event-loop stall on the real clock. No VMs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { Keys, leaseTiming, type LeaseTiming } from '@monocore/engine';
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

async function setup(opts: { redisUrl?: string; timing?: LeaseTiming; realClock?: boolean } = {}) {
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
    timing: opts.timing ?? timing,
    logger: quiet,
    usage: () => ({ freeCpus: 4, freeRamMib: 1024 }),
    fence: (name, epoch, why) => fenced.push({ name, epoch, why }),
    reclaim: async (name, epoch) => {
      reclaimed.push({ name, epoch });
    },
    ...(opts.realClock ? {} : { now: () => clock }),
  });
  const assign = (name: string, host: string, epoch: number) => redis.hset(Keys.service(name), { host, epoch, status: 'running', desired: 'running' });
  return { url, redis, liveness, fenced, reclaimed, assign, advance: (ms: number) => (clock += ms) };
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

// --- A busy host: docs/ORCHESTRATION.md "A busy host" ---

/** Redis answers `redis` (this connection only) late: a BLPOP that finds nothing holds every later command on it for `ms`. */
function holdReplies(redis: Redis, ms: number): Promise<unknown> {
  return redis.blpop('test:nothing-ever', ms / 1000);
}

/** A stalled event loop, as a CPU-bound synchronous step under load makes it. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

test('a late round does not hold the next: a round goes out every period whatever earlier rounds wait for', async () => {
  const { redis, liveness, fenced, assign, advance } = await setup();
  await assign('s7', 'h1', 1);
  assert.equal(await liveness.acquire('s7', 1), 'held');
  await liveness.tick(); // the renewal script is loaded: later rounds are sent at once
  const held = holdReplies(redis, 500); // shorter than renewTimeoutMs: the rounds are late, not lost
  advance(timing.renewEveryMs);
  const first = liveness.tick(); // sent at T, answered late
  advance(timing.renewEveryMs);
  const second = liveness.tick(); // sent at T + renewEvery while the first still waits
  await Promise.all([held, first, second]);
  // T + fence time: only the first round's send time would fence here.
  advance(timing.fenceAfterMs - timing.renewEveryMs);
  liveness.checkDeadlines();
  assert.deepEqual(fenced, [], 'the second round went out and moved the deadline');
  assert.equal(liveness.holds('s7', 1), true);
  advance(timing.renewEveryMs);
  liveness.checkDeadlines();
  assert.equal(fenced.length, 1, 'and the deadline is the second round\'s send time + fence time');
});

test('a heartbeat goes out with its round, even when the round gives up', async () => {
  const { url, redis, liveness, assign, advance } = await setup();
  const observer = new Redis(url);
  conns.push(observer);
  await assign('s8', 'h1', 1);
  assert.equal(await liveness.acquire('s8', 1), 'held');
  await liveness.tick(); // scripts loaded, host registered by the heartbeat
  await observer.set(Keys.hostAlive('h1'), 'marker', 'PX', 60_000);
  const held = holdReplies(redis, timing.renewTimeoutMs + 500); // longer than the round waits
  advance(timing.renewEveryMs);
  await liveness.tick(); // gives up after renewTimeoutMs, without throwing
  await held;
  await redis.ping(); // every command sent before it on this connection has been answered
  const alive = await observer.get(Keys.hostAlive('h1'));
  assert.notEqual(alive, 'marker', 'the heartbeat was sent with the round that gave up, and landed');
  assert.ok((await observer.pttl(Keys.hostAlive('h1'))) <= timing.hostTtlMs, 'with the host TTL');
});

test('an event-loop stall of 0.6 L right after a round went out does not fence (real clock, L = 2 s)', async () => {
  const L = 2000; // renew 500 ms, fence after 1500 ms, margin 500 ms
  const t = leaseTiming(L);
  const { liveness, fenced, assign } = await setup({ timing: t, realClock: true });
  await assign('s9', 'h1', 1);
  assert.equal(await liveness.acquire('s9', 1), 'held');
  // The worst moment for a stall: right after a round was sent, its reply arriving during the stall.
  const tick = liveness.tick.bind(liveness);
  let rounds = 0;
  let stalled!: () => void;
  const stall = new Promise<void>((resolve) => (stalled = resolve));
  liveness.tick = () => {
    const round = tick();
    if (++rounds === 2) {
      setImmediate(() => {
        busy(0.6 * L);
        stalled();
      });
    }
    return round;
  };
  await liveness.start();
  try {
    await stall;
    await sleep(2 * t.renewEveryMs); // the fence check runs many times after the stall
    assert.deepEqual(fenced, [], 'the reply that arrived during the stall was read before the fence check judged');
    assert.equal(liveness.holds('s9', 1), true);
  } finally {
    await liveness.stop();
  }
});
