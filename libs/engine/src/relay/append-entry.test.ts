import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RELAY_MAX_CHUNK_BYTES, type RelayEntry } from './relay-protocol.js';
import { appendEntry, appendWireEntry } from './append-entry.js';
import { registerLocalInbox, type LocalInbox } from './local-inboxes.js';
import { WireEntry } from './wire-entry.js';
import { isSlab, spareSlabs } from '../streams/slabs.js';

// Never connects: a write that goes to Redis rejects at once (no offline queue), so a test sees which way an entry went.
const redisAt = (db: number): Redis => new Redis({ host: '127.0.0.1', port: 1, db, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });

/** A LocalInbox that keeps what it accepts (or refuses everything once `closed`). */
function fakeInbox(): LocalInbox & { got: RelayEntry[]; closed: boolean } {
  const inbox = {
    got: [] as RelayEntry[],
    closed: false,
    accept(e: RelayEntry): string | null {
      if (inbox.closed) return null;
      inbox.got.push(e);
      return `local-${inbox.got.length}`;
    },
  };
  return inbox;
}

test('appendEntry in process: the bytes are copied (a large field into a slab), the JSON made anew', async () => {
  const redis = redisAt(0);
  const inbox = fakeInbox();
  const unregister = registerLocalInbox(redis, 'k1', inbox);
  try {
    const small = Buffer.from('hello');
    const large = randomBytes(RELAY_MAX_CHUNK_BYTES);
    const largeCopy = Buffer.from(large);
    const json = { bytes: 7, nested: { a: [1, 2] }, gone: undefined };
    assert.equal(await appendEntry(redis, 'k1', 'd', 'c1', { data: small }), 'local-1');
    assert.equal(await appendEntry(redis, 'k1', 'd', 'c1', { data: large }), 'local-2');
    assert.equal(await appendEntry(redis, 'k1', 'cr', 'c1', { json }), 'local-3');
    // The writer reuses all of it at once.
    small.fill(0);
    large.fill(0);
    json.nested.a.push(3);
    const [a, b, c] = inbox.got;
    assert.deepEqual([a?.kind, a?.call, a?.data?.toString()], ['d', 'c1', 'hello']);
    assert.ok(b?.data?.equals(largeCopy), 'the large field as it was written');
    assert.ok(b?.data && isSlab(b.data), 'a large field lands in a slab, as the inbox reader puts it');
    assert.deepEqual(c?.json, { bytes: 7, nested: { a: [1, 2] } }, 'JSON as it was, without undefined members (as through Redis)');
    assert.equal(c?.data, undefined);
  } finally {
    unregister();
  }
});

test('appendWireEntry in process: the slab goes over as it is; a refused one is given back', async () => {
  const redis = redisAt(0);
  const inbox = fakeInbox();
  const unregister = registerLocalInbox(redis, 'k2', inbox);
  try {
    const data = randomBytes(RELAY_MAX_CHUNK_BYTES);
    const entry = new WireEntry('k2', 'd', 'c2');
    entry.append(data);
    const view = entry.take();
    assert.equal(await appendWireEntry(redis, entry), 'local-1');
    const got = inbox.got[0]!;
    assert.deepEqual([got.kind, got.call], ['d', 'c2']);
    assert.equal(got.data?.buffer, view.buffer, 'the same memory, not a copy');
    assert.ok(got.data.equals(data));

    inbox.closed = true;
    const refused = new WireEntry('k2', 'd', 'c2');
    refused.append(data);
    const before = spareSlabs();
    assert.equal(await appendWireEntry(redis, refused), null, 'a closed inbox refuses, as a deleted one does');
    assert.equal(spareSlabs(), before + 1, 'the refused slab serves again');
  } finally {
    unregister();
  }
});

test('appendEntry goes to Redis when no inbox of that key is here, with inProcess: false, in another database, or with two readers', async () => {
  const redis = redisAt(0);
  const other = redisAt(1);
  const inbox = fakeInbox();
  const unregister = registerLocalInbox(redis, 'k3', inbox);
  const viaRedis = (p: Promise<unknown>): Promise<void> => assert.rejects(p, /Stream isn't writeable|offline queue/);
  try {
    await viaRedis(appendEntry(redis, 'not-here', 'd', 'c3'));
    await viaRedis(appendEntry(redis, 'k3', 'd', 'c3', {}, { inProcess: false }));
    await viaRedis(appendWireEntry(redis, WireEntry.of('k3', 'd', 'c3', Buffer.from('x')), { inProcess: false }));
    await viaRedis(appendEntry(other, 'k3', 'd', 'c3'));
    const second = fakeInbox();
    const unregisterSecond = registerLocalInbox(redis, 'k3', second);
    await viaRedis(appendEntry(redis, 'k3', 'd', 'c3'));
    unregisterSecond();
    assert.equal(await appendEntry(redis, 'k3', 'd', 'c3'), 'local-1', 'one reader again: in process');
    assert.equal(second.got.length, 0);
  } finally {
    unregister();
  }
  await viaRedis(appendEntry(redis, 'k3', 'd', 'c3'));
  assert.equal(inbox.got.length, 1, 'nothing reaches an unregistered inbox');
});
