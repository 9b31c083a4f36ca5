import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gather } from './gather.js';

test('gather: pieces of at least the size, the rest at the end, every byte in order', async () => {
  async function* source(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 10; i++) yield Buffer.alloc(300, i);
  }
  const pieces: Buffer[] = [];
  for await (const p of gather(source(), 1000)) pieces.push(p);
  assert.deepEqual(pieces.map((p) => p.length), [1200, 1200, 600]);
  const all = Buffer.concat(pieces);
  for (let i = 0; i < 10; i++) assert.equal(all[i * 300], i);
  const none: Buffer[] = [];
  for await (const p of gather((async function* () {})(), 10)) none.push(p);
  assert.deepEqual(none, []);
});
