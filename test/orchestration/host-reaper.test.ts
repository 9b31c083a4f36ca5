// HostReaper against a real Redis (no workers, no VMs): a service left `lost` by a reaper round
// that could not finish is rescheduled later even though its host came back under the same id.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { HostReaper, HostRegistry, Keys, QUEUE_PREFIX, QueueNames, StateStore } from '@monocore/engine';
import { TEST_REDIS_DBS } from '../support/env.js';
import { freshDb, quiet } from './support.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

const HOST = { cpus: 4, ramMib: 4096, backends: ['qemu'] };

/** A fresh database, its stores and a reaper with these timings (closed after the file). */
async function setup(timing: { graceMs: number; joblessMs?: number }): Promise<{ redis: Redis; hosts: HostRegistry; state: StateStore; reaper: HostReaper }> {
  const url = await freshDb(TEST_REDIS_DBS['orchestration/host-reaper']);
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  cleanup.push(() => redis.quit());
  const reaper = new HostReaper({ redis, logger: quiet, ...timing, startAttempts: 3, startBackoffMs: 1000 });
  cleanup.push(() => reaper.close());
  return { redis, hosts: new HostRegistry(redis), state: new StateStore(redis), reaper };
}

test('a service lost on a host that is alive again is rescheduled after a grace period, once', async () => {
  const graceMs = 5_000;
  const { redis, hosts, state, reaper } = await setup({ graceMs });

  // w2 came back (same id) after a reaper marked s13 lost and could not place it: its record
  // still names w2, at epoch 4, and no job exists for it anywhere.
  await hosts.register({ id: 'w2', ...HOST }, 60_000);
  await hosts.allocate('w2', 's13', 1, 256);
  await redis.multi()
    .hset(Keys.service('s13'), { name: 's13', status: 'lost', host: 'w2', epoch: 4, desired: 'running', cpus: 1, ram_mib: 256, image: 'busybox' })
    .sadd(Keys.services(), 's13')
    .exec();
  // A lost service that somebody is about to move is left alone within the grace period.
  const t0 = Date.now();
  const first = await reaper.reapOnce(t0);
  assert.deepEqual(first.rescheduled, [], 'not before a grace period');
  assert.equal((await state.require('s13')).status, 'lost');

  const second = await reaper.reapOnce(t0 + graceMs);
  assert.deepEqual(second.rescheduled, [{ service: 's13', host: 'w2', epoch: 5 }]);
  const rec = await state.require('s13');
  assert.equal(rec.status, 'pending');
  assert.equal(rec.epoch, 5);
  const queue = new Queue(QueueNames.host('w2'), { connection: redis, prefix: QUEUE_PREFIX });
  cleanup.push(() => queue.close());
  const jobs = await queue.getJobs(['waiting-children', 'waiting', 'delayed']);
  assert.deepEqual(jobs.map((j) => j.data.epoch), [5], 'one start job, at the new epoch');
  assert.deepEqual(Object.keys((await hosts.list()).find((h) => h.id === 'w2')!.allocations), ['s13'], 'one allocation, not two');

  // Pending now: later rounds leave it alone.
  const third = await reaper.reapOnce(t0 + 3 * graceMs);
  assert.deepEqual(third.rescheduled, []);
});

test('a service lost on a host that is unregistered is rescheduled in the next round, without waiting', async () => {
  const { redis, hosts, reaper } = await setup({ graceMs: 60_000 });
  await hosts.register({ id: 'w1', ...HOST }, 60_000);
  await redis.multi()
    .hset(Keys.service('s1'), { name: 's1', status: 'lost', host: 'gone', epoch: 2, desired: 'running', cpus: 1, ram_mib: 256 })
    .sadd(Keys.services(), 's1')
    .exec();
  const r = await reaper.reapOnce();
  assert.deepEqual(r.rescheduled, [{ service: 's1', host: 'w1', epoch: 3 }]);
});

test('a service coming up with no start job left on its live host is started again; one with a job is left alone', async () => {
  const { redis, hosts, state, reaper } = await setup({ graceMs: 5_000, joblessMs: 30_000 });
  await hosts.register({ id: 'w1', ...HOST }, 60_000);
  for (const [name, status] of [['orphan', 'pending'], ['waiting', 'pulling']] as const) {
    await redis.multi()
      .hset(Keys.service(name), { name, status, host: 'w1', epoch: 2, desired: 'running', cpus: 1, ram_mib: 256 })
      .sadd(Keys.services(), name)
      .exec();
  }
  // `waiting` has its start job (waiting for its pull); `orphan` lost its job (e.g. with a Redis that restarted from an older write).
  const queue = new Queue(QueueNames.host('w1'), { connection: redis, prefix: QUEUE_PREFIX });
  cleanup.push(() => queue.close());
  await queue.add('start', { service: 'waiting', host: 'w1', epoch: 2 }, { jobId: 'waiting-start', delay: 600_000 });

  const t0 = Date.now();
  assert.deepEqual((await reaper.reapOnce(t0)).rescheduled, [], 'not before joblessMs');
  const later = await reaper.reapOnce(t0 + 30_000);
  assert.deepEqual(later.rescheduled, [{ service: 'orphan', host: 'w1', epoch: 3 }]);
  assert.equal((await state.require('orphan')).status, 'pending');
  assert.equal((await state.require('waiting')).epoch, 2, 'the service with a job is untouched');
  const starts = (await queue.getJobs(['waiting-children', 'waiting', 'delayed'])).filter((j) => j.data.service === 'orphan');
  assert.deepEqual(starts.map((j) => j.data.epoch), [3]);
});
