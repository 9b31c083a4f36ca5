// SandboxChanges (libs/engine/src/sandbox/sandbox-changes.ts) against the real Redis: a wait
// ends when the sandbox's transition is recorded, not at its timeout; other sandboxes' changes,
// an abort and close() behave.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { SandboxChanges, SandboxStore, type SandboxRecord } from '@monocore/engine';
import { freshDb, quiet } from '../orchestration/support.js';
import { TEST_REDIS_DBS } from '../support/env.js';

const url = await freshDb(TEST_REDIS_DBS['sandbox/sandbox-changes']);
const redis = new Redis(url, { maxRetriesPerRequest: 1 });
const store = new SandboxStore(redis);
const changes = new SandboxChanges(redis, quiet);
changes.start();
after(async () => {
  await changes.close();
  redis.disconnect();
});

const record = (id: string): SandboxRecord => ({
  id, status: 'creating', host: 'h1', epoch: 1, image: 'example.test/a:1', cpus: 1, ramMib: 256, diskMib: 256,
  env: {}, network: 'none', timeoutS: 60, createdAt: Date.now(), lastActivityAt: Date.now(),
});

/** How long `p` took to settle, in ms. */
async function timed(p: Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await p;
  return performance.now() - t0;
}

test('a wait ends when the sandbox changes, long before its timeout', async () => {
  await store.create(record('sb-a'));
  await new Promise((r) => setTimeout(r, 100)); // the feed has read past the create
  const wait = changes.next('sb-a', 20_000);
  setTimeout(() => void store.transition('sb-a', 'h1', 'running', { host: 'h1' }), 50);
  assert.ok((await timed(wait.changed)) < 10_000, 'woken by the transition, not by the 20 s timeout');
  wait.cancel();
  assert.equal((await store.get('sb-a'))?.status, 'running');
});

test("another sandbox's change does not wake a wait; its timeout, an abort and close() do", async () => {
  await store.create(record('sb-b'));
  await store.create(record('sb-c'));
  const wait = changes.next('sb-b', 600);
  await store.transition('sb-c', 'h1', 'running', { host: 'h1' });
  assert.ok((await timed(wait.changed)) >= 400, 'not woken by sb-c');
  wait.cancel();

  const ac = new AbortController();
  const aborted = changes.next('sb-b', 20_000, ac.signal);
  setTimeout(() => ac.abort(), 50);
  assert.ok((await timed(aborted.changed)) < 10_000);
  aborted.cancel();

  const other = new SandboxChanges(redis, quiet);
  const pending = other.next('sb-b', 20_000);
  const closed = other.close();
  assert.ok((await timed(pending.changed)) < 10_000);
  await closed;
});

test('a wait on a feed that has just started is woken by a change recorded right after it', async () => {
  // The feed starts from the stream's last entry as read at start(), not from XREAD's `$` once
  // its own connection is up: a change recorded in between would otherwise be missed, and the
  // wait would run to its timeout.
  await store.create(record('sb-d'));
  const fresh = new SandboxChanges(redis, quiet);
  try {
    const wait = fresh.next('sb-d', 5_000);
    await store.transition('sb-d', 'h1', 'running', { host: 'h1' });
    assert.ok((await timed(wait.changed)) < 2_500, 'woken by the transition, not by the 5 s timeout');
    wait.cancel();
  } finally {
    await fresh.close();
  }
});
