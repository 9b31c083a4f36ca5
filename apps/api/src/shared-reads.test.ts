import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SharedReads } from './shared-reads.js';

/** A read whose result the test hands out when it likes, counting its starts. */
function controlledRead(): {
  read: () => Promise<number>;
  starts: number;
  firstStart: Promise<void>;
  finish: (v: number) => void;
  fail: (e: Error) => void;
} {
  const waiting: Array<{ resolve: (v: number) => void; reject: (e: Error) => void }> = [];
  let started = (): void => undefined;
  const c = {
    starts: 0,
    firstStart: new Promise<void>((resolve) => (started = resolve)),
    read: () => {
      c.starts++;
      started();
      return new Promise<number>((resolve, reject) => waiting.push({ resolve, reject }));
    },
    finish: (v: number) => waiting.shift()!.resolve(v),
    fail: (e: Error) => waiting.shift()!.reject(e),
  };
  return c;
}

// gatherMs 0: a read starts on the next event-loop turn, so the tests wait on turns, not on time.
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('SharedReads: identical calls of one turn share one read; other keys read on their own', async () => {
  const shared = new SharedReads<number>({ gatherMs: 0 });
  const c = controlledRead();
  const other = controlledRead();
  const calls = [1, 2, 3, 4, 5].map(() => shared.get('all', c.read));
  const otherCall = shared.get('group=a', other.read);
  await turn();
  assert.equal(c.starts, 1);
  assert.equal(other.starts, 1);
  c.finish(42);
  other.finish(7);
  assert.deepEqual(await Promise.all(calls), [42, 42, 42, 42, 42]);
  assert.equal(await otherCall, 7);
});

test('SharedReads: a call made while a read is under way gets a read that starts after it (it may follow a write)', async () => {
  const shared = new SharedReads<number>({ gatherMs: 0 });
  const c = controlledRead();
  const first = shared.get('all', c.read);
  await turn();
  assert.equal(c.starts, 1, 'the first read is under way');
  const second = shared.get('all', c.read);
  const third = shared.get('all', c.read);
  await turn();
  assert.equal(c.starts, 2, 'the later calls started a read of their own, not joined the running one');
  c.finish(1);
  c.finish(2);
  assert.equal(await first, 1);
  assert.deepEqual(await Promise.all([second, third]), [2, 2]);
});

test('SharedReads: a failed read fails every caller that shared it; the next call reads again', async () => {
  const shared = new SharedReads<number>({ gatherMs: 0 });
  const c = controlledRead();
  const a = shared.get('all', c.read);
  const b = shared.get('all', c.read);
  await turn();
  c.fail(new Error('redis gone'));
  await assert.rejects(a, /redis gone/);
  await assert.rejects(b, /redis gone/);
  const again = shared.get('all', c.read);
  await turn();
  c.finish(3);
  assert.equal(await again, 3);
  assert.equal(c.starts, 2);
});

test('SharedReads with the default pause: calls made together share one read', async () => {
  const shared = new SharedReads<number>();
  const c = controlledRead();
  const calls = [shared.get('all', c.read), shared.get('all', c.read), shared.get('all', c.read)];
  await c.firstStart;
  c.finish(9);
  assert.deepEqual(await Promise.all(calls), [9, 9, 9]);
  assert.equal(c.starts, 1);
});
