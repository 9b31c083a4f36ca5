// A lost host's queues are adopted by the worker that reaped it (apps/worker/src/queue-adopter.ts)
// until they drain — but a host that came back under the same id owns its new jobs again. Real
// Redis and BullMQ, no VMs: the host processor is a recorder.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { HostRegistry, Keys, QUEUE_PREFIX, QueueNames } from '@monocore/engine';
import { QueueAdopter } from '@monocore/worker';
import { TEST_REDIS_DBS } from '../support/env.js';
import { freshDb, quiet, until } from './support.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

test('an adopted queue completes the jobs of a dead host, and leaves a returned host its jobs', async () => {
  const url = await freshDb(TEST_REDIS_DBS['orchestration/queue-adopter']);
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  cleanup.push(() => redis.quit());
  const hosts = new HostRegistry(redis);
  const processed: string[] = [];
  const adopter = new QueueAdopter(redis, hosts, async (job: Job) => {
    processed.push(job.id!);
    return { service: 'x', action: 'moved' };
  }, quiet);
  cleanup.push(() => adopter.close());
  const queue = new Queue(QueueNames.host('hX'), { connection: redis, prefix: QUEUE_PREFIX });
  cleanup.push(() => queue.close());

  // hX is dead (no alive key): its queued job is completed by the adopter.
  adopter.adopt('hX');
  await queue.add('start', { service: 'a' }, { jobId: 'dead-host-job' });
  await until('the dead host job processed by the adopter', async () => processed.includes('dead-host-job'), 10_000);

  // hX comes back (a worker restarted with its id) and queues a reboot before any tick released it.
  await redis.set(Keys.hostAlive('hX'), String(Date.now()), 'PX', 60_000);
  await queue.add('start', { service: 'b' }, { jobId: 'returned-host-job' });
  await until('the job handed back (delayed for its host)', async () => (await queue.getJobState('returned-host-job')) === 'delayed', 10_000);
  assert.ok(!processed.includes('returned-host-job'), 'the adopter did not run a job of a live host');
  // The next tick sees hX alive and releases its queues; the job stays for hX itself.
  await adopter.tick();
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(!processed.includes('returned-host-job'), 'still not run by the adopter once released');
  assert.ok(['delayed', 'waiting'].includes(await queue.getJobState('returned-host-job')), 'waiting for its own host');
});
