// StateStore and HostRegistry against a real Redis: atomic, fenced transitions
// with their events, and leases.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { HostRegistry, Keys, StateStore, isMonocoreError } from '@monocore/engine';
import { freshDb, until } from './support.js';
import { TEST_REDIS_DBS } from '../support/env.js';

const DB = TEST_REDIS_DBS['orchestration/state-store'];
const url = await freshDb(DB);
const redis = new Redis(url);
after(() => redis.quit());
const store = new StateStore(redis);

async function seed(name: string, fields: Record<string, string | number> = {}): Promise<void> {
  await redis.multi().hset(Keys.service(name), { name, status: 'pending', host: 'h1', epoch: 1, desired: 'running', ...fields }).sadd(Keys.services(), name).exec();
}

test('listSummary with no services recorded: an empty list (the script\'s JSON writes it as {})', async () => {
  assert.deepEqual(await store.listSummary(), []);
});

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

test('listSummary: every service in one command on the wire, sorted by name, without config; a name whose hash is gone is left out', async () => {
  // Its own connection, so MONITOR can tell its commands from everyone else's.
  const reader = new Redis(url);
  const monitor = new Redis(url);
  try {
    const readerStore = new StateStore(reader);
    await seed('sum-b', { restarts: 2, group: 'g1', log_tail: 'ünïcode "quoted" \\ line\nnext', config: '{"big":true}' });
    await seed('sum-a', { exit_code: 3, depends_on: '["sum-b"]' });
    await seed('sum-c');
    await redis.del(Keys.service('sum-c')); // removed between the set and the hash (as remove's MULTI never leaves it, but a reader must cope)
    await readerStore.listSummary(); // loads the script once (SCRIPT LOAD + EVALSHA)

    const readerAddr = String(await reader.client('INFO')).match(/addr=(\S+)/)![1]!;
    const seen: string[] = [];
    const mon = await monitor.monitor();
    const pinged = new Promise<void>((resolve) =>
      mon.on('monitor', (_time: string, args: string[], source: string) => {
        if (!source.endsWith(readerAddr)) return;
        seen.push(String(args[0]).toLowerCase());
        if (seen.at(-1) === 'ping') resolve();
      }),
    );
    const all = (await readerStore.listSummary()).filter((r) => r.name.startsWith('sum-'));
    await reader.ping('end-of-read'); // MONITOR reports in order: once this shows, the read's commands have too
    await pinged;
    mon.disconnect();
    assert.deepEqual(seen, ['evalsha', 'ping'], 'one command for the whole read');

    assert.deepEqual(all.map((r) => r.name), ['sum-a', 'sum-b']);
    const [a, b] = all;
    assert.equal(a!.exitCode, 3);
    assert.deepEqual(a!.dependsOn, ['sum-b']);
    assert.equal(b!.restarts, 2);
    assert.equal(b!.group, 'g1');
    assert.equal(b!.logTail, 'ünïcode "quoted" \\ line\nnext');
    assert.equal(b!.config, undefined, 'the config JSON is not read');
    assert.deepEqual(all, [...(await readerStore.getSummary(['sum-a', 'sum-b'])).values()], 'the same records as the per-service read');
  } finally {
    reader.disconnect();
    monitor.disconnect();
  }
});

