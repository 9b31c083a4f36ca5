// StateStore and HostRegistry against a real Redis: atomic, fenced transitions
// with their events, and leases.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { HostRegistry, Keys, StateStore, isMonocoreError } from '@monocore/engine';
import { freshDb, until } from './support.js';

const DB = 9;
const url = await freshDb(DB);
const redis = new Redis(url);
after(() => redis.quit());
const store = new StateStore(redis);

async function seed(name: string, fields: Record<string, string | number> = {}): Promise<void> {
  await redis.multi().hset(Keys.service(name), { name, status: 'pending', host: 'h1', epoch: 1, desired: 'running', ...fields }).sadd(Keys.services(), name).exec();
}

test('a transition is checked by the state machine inside Redis and recorded in the events stream', async () => {
  await seed('s1');
  const before = await store.lastEventId();
  assert.equal(await store.transition('s1', { status: 'starting' }, { host: 'h1', epoch: 1 }), 'pending');
  assert.equal(await store.transition('s1', { status: 'running' }, { fields: { pid: 42 } }), 'starting');
  await assert.rejects(store.transition('s1', { status: 'pulling' }), (e: unknown) =>
    isMonocoreError(e, 'MC_STATE_INVALID_TRANSITION') && /running → pulling/.test(e.message));
  assert.equal(await store.transition('s1', { status: 'exited', exitCode: 7 }), 'running');
  const rec = await store.require('s1');
  assert.equal(rec.status, 'exited');
  assert.equal(rec.exitCode, 7);
  assert.equal(rec.pid, 42);
  const events = await store.readEvents(before);
  assert.deepEqual(events.map((e) => [e.service, e.from, e.to]), [['s1', 'pending', 'starting'], ['s1', 'starting', 'running'], ['s1', 'running', 'exited']]);
  // failed(reason) and blocked(by) carry their data, cleared when leaving the status.
  await store.transition('s1', { status: 'failed', reason: 'boom' });
  assert.equal((await store.require('s1')).reason, 'boom');
  await store.transition('s1', { status: 'pending' });
  assert.equal((await store.require('s1')).reason, undefined);
});

test('fencing: a host or epoch that no longer owns the service is refused', async () => {
  await seed('s2', { host: 'h2', epoch: 3 });
  await assert.rejects(store.transition('s2', { status: 'starting' }, { host: 'h1', epoch: 3 }), (e: unknown) =>
    isMonocoreError(e, 'MC_STATE_FENCED') && /assigned to host "h2" epoch 3/.test(e.message));
  await assert.rejects(store.transition('s2', { status: 'starting' }, { host: 'h2', epoch: 2 }), { code: 'MC_STATE_FENCED' });
  assert.equal((await store.require('s2')).status, 'pending', 'nothing changed');
  await assert.rejects(store.transition('nope', { status: 'starting' }), { code: 'MC_ORCH_UNKNOWN_SERVICE' });
  assert.equal(await store.tryTransition('s2', { status: 'starting' }, { host: 'h1' }), null);
});

test('leases: one holder at a time, renewed only by its holder, taken over only after it expires', async () => {
  await seed('s3', { host: 'a', epoch: 1 });
  assert.equal(await store.acquireLease('s3', 'a', 1, 300), 'held');
  assert.equal(await store.acquireLease('s3', 'a', 1, 300), 'held', 're-entrant for the same host and epoch');
  // The service moves to host b (epoch 2) while a's lease is still live.
  await redis.hset(Keys.service('s3'), { host: 'b', epoch: 2 });
  assert.equal(await store.acquireLease('s3', 'a', 1, 300), 'stale', 'a may not boot any more');
  const busy = await store.acquireLease('s3', 'b', 2, 300);
  assert.ok(typeof busy === 'object' && busy.holder === 'a:1' && busy.pttlMs > 0, 'b waits for a to expire');
  assert.equal(await store.renewLease('s3', 'b', 2, 300), false);
  await until('a\'s lease expired', async () => (await redis.pttl(Keys.lease('s3'))) === -2, 5000, 20);
  assert.equal(await store.renewLease('s3', 'a', 1, 300), false, 'expired: a cannot renew');
  assert.equal(await store.acquireLease('s3', 'b', 2, 300), 'held');
  assert.equal(await store.releaseLease('s3', 'a', 1), false);
  assert.equal(await store.releaseLease('s3', 'b', 2), true);
});

test('host registry: heartbeat TTL, capacity net of allocations', async () => {
  const hosts = new HostRegistry(redis);
  await hosts.register({ id: 'h9', cpus: 8, ramMib: 4096, backends: ['qemu'] }, 300);
  await hosts.allocate('h9', 'x', 2, 1024);
  let [h] = await hosts.list();
  assert.ok(h);
  assert.deepEqual([h.alive, h.freeCpus, h.freeRamMib, h.backends], [true, 6, 3072, ['qemu']]);
  await until('the heartbeat key expired', async () => (await redis.pttl(Keys.hostAlive('h9'))) === -2, 5000, 20);
  [h] = await hosts.list();
  assert.equal(h?.alive, false, 'the heartbeat key expired');
  assert.equal(await hosts.heartbeat('h9', 300), false, 'the host learns it had expired');
  assert.equal(await hosts.isAlive('h9'), true);
  await hosts.unregister('h9');
  assert.deepEqual(await hosts.list(), []);
});
