/**
 * An inbox read in the process that writes to it, on real Redis (docs/RELAY.md "In one
 * process"): entries are handed over without Redis, in order, on a later turn of the event
 * loop, sharing nothing with the writer; entries from Redis still arrive through the same
 * handler; a closed inbox refuses writes as a deleted one does.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { Inbox, Keys, appendEntry, type InboxOptions } from '@monocore/engine';
import { freshDb, quiet, until } from '../orchestration/support.js';
import { TEST_REDIS_DBS } from '../support/env.js';

type Entries = Parameters<InboxOptions['onEntries']>[0];

async function entriesAdded(redis: Redis, key: string): Promise<number> {
  const info = (await redis.call('XINFO', 'STREAM', key)) as unknown[];
  return Number(info[info.indexOf('entries-added') + 1]);
}

describe('an inbox read in this process', () => {
  let redis: Redis;
  let n = 0;

  before(async () => {
    redis = new Redis(await freshDb(TEST_REDIS_DBS['relay/in-process']), { maxRetriesPerRequest: 3 });
  });
  after(async () => {
    await redis?.quit();
  });

  /** An inbox on a fresh key that keeps every batch it is handed. */
  async function open(extra: Partial<InboxOptions> = {}): Promise<{ inbox: Inbox; batches: Entries[]; all: () => Entries }> {
    const batches: Entries[] = [];
    const inbox = await Inbox.open({ redis, key: Keys.inbox(`test:${++n}`), logger: quiet, onEntries: (b) => void batches.push(b), ...extra });
    return { inbox, batches, all: () => batches.flat() };
  }

  test('many entries arrive in the order written, in batches, and none through Redis', async () => {
    const { inbox, batches, all } = await open();
    try {
      const N = 5000;
      const writes: Array<Promise<string | null>> = [];
      for (let i = 0; i < N; i++) {
        writes.push(appendEntry(redis, inbox.key, i % 3 === 0 ? 'cr' : 'd', `c${i % 7}`, i % 3 === 0 ? { json: { i } } : { data: Buffer.from(`#${i}`) }));
        // Some writes come on later turns, after a batch was delivered.
        if (i % 1000 === 999) await nextTurn();
      }
      assert.ok((await Promise.all(writes)).every((id) => id !== null && id.startsWith('local-')));
      await until('every entry to arrive', async () => all().length === N);
      all().forEach((e, i) => {
        assert.equal(e.call, `c${i % 7}`);
        if (i % 3 === 0) assert.deepEqual([e.kind, e.json], ['cr', { i }]);
        else assert.deepEqual([e.kind, e.data?.toString()], ['d', `#${i}`]);
      });
      assert.ok(batches.length >= 5 && batches.length < N / 10, `${batches.length} batches`);
      assert.equal(await entriesAdded(redis, inbox.key), 1, 'only the marker went to Redis');
    } finally {
      await inbox.close();
    }
  });

  test('delivery is on a later turn, never inside the write; the reader gets copies', async () => {
    const { inbox, all } = await open();
    try {
      const buf = Buffer.alloc(256 << 10, 1);
      const json = { bytes: 1 };
      const id = appendEntry(redis, inbox.key, 'd', 'c1', { data: buf });
      const id2 = appendEntry(redis, inbox.key, 'cr', 'c1', { json });
      assert.equal(all().length, 0, 'not delivered inside the write call');
      assert.ok((await id) !== null && (await id2) !== null);
      assert.equal(all().length, 0, 'not delivered when the write resolved either');
      // The writer reuses its buffer and object before the reader ran.
      buf.fill(2);
      json.bytes = 2;
      await until('the entries to arrive', async () => all().length === 2);
      const [d, cr] = all();
      assert.ok(d?.data?.equals(Buffer.alloc(256 << 10, 1)), 'the bytes as written');
      assert.deepEqual(cr?.json, { bytes: 1 });
      assert.notEqual(cr?.json, json);
    } finally {
      await inbox.close();
    }
  });

  test('entries from Redis (another process, or inProcess: false) reach the same handler', async () => {
    const { inbox, all } = await open();
    try {
      await appendEntry(redis, inbox.key, 'd', 'c1', { data: Buffer.from('here') });
      await appendEntry(redis, inbox.key, 'd', 'c1', { data: Buffer.from('there') }, { inProcess: false });
      await until('both entries to arrive', async () => all().length === 2);
      assert.deepEqual(all().map((e) => [e.id.startsWith('local-'), e.data?.toString()]), [
        [true, 'here'],
        [false, 'there'],
      ]);
      assert.equal(await entriesAdded(redis, inbox.key), 2);
    } finally {
      await inbox.close();
    }
  });

  test('an inbox opened with inProcess: false is written through Redis', async () => {
    const { inbox, all } = await open({ inProcess: false });
    try {
      assert.ok((await appendEntry(redis, inbox.key, 'd', 'c1', { data: Buffer.from('x') }))?.match(/^\d+-\d+$/));
      await until('the entry to arrive', async () => all().length === 1);
      assert.equal(await entriesAdded(redis, inbox.key), 2);
    } finally {
      await inbox.close();
    }
  });

  test('closed: a write is refused as by a deleted inbox, and nothing more is delivered', async () => {
    const { inbox, all } = await open();
    // Handed over but not yet delivered when the inbox closes: dropped, like unread entries in Redis.
    assert.notEqual(await appendEntry(redis, inbox.key, 'd', 'c1', { data: Buffer.from('late') }), null);
    await inbox.close();
    assert.equal(await appendEntry(redis, inbox.key, 'd', 'c1', { data: Buffer.from('after') }), null);
    assert.equal(inbox.accept({ id: '', kind: 'd', call: 'c1', data: randomBytes(4) }), null, 'the inbox itself refuses');
    assert.equal(await redis.exists(inbox.key), 0);
    await nextTurn();
    await nextTurn();
    assert.equal(all().length, 0);
  });
});
