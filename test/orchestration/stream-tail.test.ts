// tailStream / tailEvents / lastStreamId (libs/engine/src/state/stream-tail.ts) against the real
// Redis: entries in order from an id, "from now" that misses nothing written right after the
// call, and an abort that ends a blocked read at once and closes the tail's connection.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { Keys, Orchestrator, StateStore, lastStreamId, tailEvents, tailStream, type StreamEntry } from '@monocore/engine';
import { freshDb, quiet } from './support.js';
import { TEST_REDIS_DBS, waitFor } from '../support/env.js';

const DB = TEST_REDIS_DBS['orchestration/stream-tail'];
const url = await freshDb(DB);
const redis = new Redis(url, { maxRetriesPerRequest: 1 });
after(() => redis.disconnect());

/** Connections on this file's database (no other test file uses it), and how many of them block in XREAD. */
async function clients(): Promise<{ all: number; xread: number }> {
  const lines = ((await redis.client('LIST')) as string).split('\n').filter((l) => new RegExp(`\\bdb=${DB}\\b`).test(l));
  return { all: lines.length, xread: lines.filter((l) => /\bcmd=xread\b/.test(l)).length };
}

/** The next `n` entries of `it`. */
async function take<T>(it: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) throw new Error(`the tail ended after ${out.length} of ${n} entries`);
    out.push(r.value);
  }
  return out;
}

const values = (entries: StreamEntry[]): string[] => entries.map((e) => e.fields[1] ?? '');

test('entries after the start id, in order: those in the stream, then each new one', async () => {
  const key = 'tail:order';
  const ids: string[] = [];
  for (const v of ['a', 'b', 'c', 'd']) ids.push((await redis.xadd(key, '*', 'v', v)) as string);
  const ac = new AbortController();
  const it = tailStream(redis, key, ids[1]!, { signal: ac.signal, count: 1 }); // count 1: one XREAD per entry
  const old = await take(it, 2);
  assert.deepEqual(values(old), ['c', 'd']);
  assert.deepEqual(old.map((e) => e.id), ids.slice(2));
  const later = take(it, 3);
  for (const v of ['e', 'f', 'g']) await redis.xadd(key, '*', 'v', v);
  assert.deepEqual(values(await later), ['e', 'f', 'g']);
  ac.abort();
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('from now (lastStreamId): an entry written right after the call is not missed', async () => {
  // Not awaited: the read of the last id is sent at the call, ahead of the XADD on the same
  // connection, and long before the tail's own connection exists (where XREAD `$` would start).
  const key = 'tail:now';
  await redis.xadd(key, '*', 'v', 'before');
  const ac = new AbortController();
  const it = tailStream(redis, key, lastStreamId(redis, key), { signal: ac.signal });
  await redis.xadd(key, '*', 'v', 'right after');
  assert.deepEqual(values(await take(it, 1)), ['right after']);
  ac.abort();

  // Awaited, with the entry written by another connection; and a stream that does not exist yet.
  const writer = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    for (const k of [key, 'tail:new']) {
      const from = await lastStreamId(redis, k);
      await writer.xadd(k, '*', 'v', `after ${from}`);
      const ac2 = new AbortController();
      const it2 = tailStream(redis, k, from, { signal: ac2.signal });
      assert.deepEqual(values(await take(it2, 1)), [`after ${from}`]);
      ac2.abort();
    }
  } finally {
    writer.disconnect();
  }
  assert.equal(await lastStreamId(redis, 'tail:missing'), '0');
});

test('an abort ends a blocked read at once, and the tail\'s connection is closed', async () => {
  const key = 'tail:abort';
  await redis.xadd(key, '*', 'v', 'x');
  await waitFor(async () => (await clients()).xread === 0, { what: 'earlier tails to close', timeoutMs: 5000 });
  const before = (await clients()).all;
  const ac = new AbortController();
  const it = tailStream(redis, key, await lastStreamId(redis, key), { signal: ac.signal, blockMs: 20_000 });
  const next = it.next();
  await waitFor(async () => (await clients()).xread === 1, { what: 'the tail to block in XREAD' });
  assert.equal((await clients()).all, before + 1, 'one connection of its own');
  const t0 = performance.now();
  ac.abort();
  assert.deepEqual(await next, { done: true, value: undefined });
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `ended ${Math.round(ms)} ms after the abort, not at the 20 s block timeout`);
  await waitFor(async () => (await clients()).all === before, { what: 'the tail\'s connection to close', timeoutMs: 2000 });

  // Aborted before it started: no connection at all.
  const it2 = tailStream(redis, key, '0', { signal: AbortSignal.abort() });
  assert.deepEqual(await it2.next(), { done: true, value: undefined });
  assert.equal((await clients()).all, before);
});

test('leaving the loop (break) closes the connection too; tailEvents parses the event stream', async () => {
  await waitFor(async () => (await clients()).xread === 0, { what: 'earlier tails to close', timeoutMs: 5000 });
  const before = (await clients()).all;
  const store = new StateStore(redis);
  const from = store.lastEventId();
  await store.emit({ kind: 'deployment', deploymentId: 'd1', detail: 'up 1 services' });
  await store.emit({ kind: 'host', host: 'h1', detail: 'joined' });
  const seen = [];
  for await (const e of tailEvents(redis, from, { blockMs: 20_000 })) {
    seen.push(e);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen.map((e) => [e.kind, e.deploymentId ?? e.host, e.detail]), [['deployment', 'd1', 'up 1 services'], ['host', 'h1', 'joined']]);
  assert.equal(seen[1]!.id, await lastStreamId(redis, Keys.events()));
  await waitFor(async () => (await clients()).all === before, { what: 'the tail\'s connection to close', timeoutMs: 2000 });
});

test('Orchestrator.events() follows leave no listener behind on a signal that outlives them', async () => {
  // The orchestrator links every follow to its own close signal, which lives as long as the API,
  // and to the caller's: a listener left per follow would pile up for the process's life.
  const orch = new Orchestrator({ redisUrl: url, logger: quiet });
  try {
    const server = new AbortController(); // e.g. one signal for a whole server's requests
    await orch.state.emit({ kind: 'host', host: 'h2', detail: 'joined' });
    for (let i = 0; i < 20; i++) {
      for await (const e of orch.events({ since: '0', signal: server.signal })) {
        assert.ok(e.id);
        break;
      }
    }
    assert.equal(getEventListeners(server.signal, 'abort').length, 0);
  } finally {
    await orch.close();
  }
});
