import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InFlight } from './in-flight.js';

const deferred = (): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } => {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
};

test('InFlight: add() returns at once below the limit and waits at it until one send is answered', async () => {
  const q = new InFlight(2);
  const a = deferred();
  const b = deferred();
  await q.add(a.promise);
  let second = false;
  const adding = q.add(b.promise).then(() => (second = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(second, false, 'two unanswered: the second add waits');
  a.resolve();
  await adding;
  assert.equal(second, true);
  b.resolve();
  await q.settle();
});

test('InFlight: a failed send fails the next add and settle, even when it failed while nobody waited', async () => {
  const q = new InFlight(4);
  const a = deferred();
  await q.add(a.promise);
  a.reject(new Error('inbox gone'));
  await new Promise((r) => setImmediate(r));
  await assert.rejects(q.add(Promise.resolve()), /inbox gone/);
  await assert.rejects(q.settle(), /inbox gone/);
});
