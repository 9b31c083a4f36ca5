import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Command } from 'ioredis';
import { isSlab, releaseSlab, spareSlabs, takeSlab } from '../streams/slabs.js';
import { WireEntry } from './wire-entry.js';

// What ioredis itself sends for the same XADD: the entry must be byte for byte the same command.
const ioredisWire = (key: string, kind: string, call: string, data: Buffer): Buffer =>
  Buffer.from(new Command('xadd', [key, 'NOMKSTREAM', '*', 'k', kind, 'c', call, 'd', data]).toWritable({}) as Buffer);

test('WireEntry: a full entry is the XADD ioredis would send, whatever the chunks it was appended in', () => {
  const data = randomBytes(1000);
  const e = new WireEntry('{monocore}:inbox:host:h1', 'd', 'cabc123', 1000);
  let off = 0;
  for (const n of [1, 99, 300, 600]) {
    assert.equal(e.append(data.subarray(off, off + n)), n);
    off += n;
  }
  assert.equal(e.room, 0);
  assert.equal(e.append(Buffer.from('more')), 0, 'a full entry takes nothing more');
  assert.deepEqual(e.command().toWritable({}), ioredisWire('{monocore}:inbox:host:h1', 'd', 'cabc123', data));
});

test('WireEntry: a partial last entry carries its own length; append() from an offset takes what fits', () => {
  const chunk = randomBytes(50);
  const e = new WireEntry('k', 'd', 'c1', 64);
  assert.equal(e.append(chunk, 10), 40);
  assert.equal(e.length, 40);
  assert.equal(e.append(chunk), 24, 'only the room left');
  assert.deepEqual(e.command().toWritable({}), ioredisWire('k', 'd', 'c1', Buffer.concat([chunk.subarray(10), chunk.subarray(0, 24)])));
  const one = new WireEntry('k', 'd', 'c1', 1 << 20);
  one.append(Buffer.from('x'));
  assert.deepEqual(one.command().toWritable({}), ioredisWire('k', 'd', 'c1', Buffer.from('x')));
});

test('WireEntry.of: bytes in a slab are sent from it in place; other bytes, and part of a slab, are copied', () => {
  const data = randomBytes(5000);
  const slab = takeSlab(data.length);
  data.copy(slab);
  const wire = WireEntry.of('k', 'o', 'c1', slab).command().toWritable({}) as Buffer;
  assert.deepEqual(wire, ioredisWire('k', 'o', 'c1', data));
  assert.equal(wire.buffer, slab.buffer, 'the command is written around the data, in the same memory');
  const part = slab.subarray(0, 100);
  assert.ok(!isSlab(part), 'part of a slab is not one: the bytes after it are not free');
  const copied = WireEntry.of('k', 'o', 'c1', part).command().toWritable({}) as Buffer;
  assert.notEqual(copied.buffer, slab.buffer);
  assert.deepEqual(copied, ioredisWire('k', 'o', 'c1', data.subarray(0, 100)));
  assert.deepEqual(slab, data, 'the slab still holds its bytes');
});

test('slabs: given back once, reused; a part or a foreign buffer is never taken back', () => {
  const before = spareSlabs();
  const a = takeSlab();
  releaseSlab(a.subarray(0, 10));
  releaseSlab(Buffer.alloc(10));
  assert.equal(spareSlabs(), before);
  releaseSlab(a);
  releaseSlab(a);
  assert.equal(spareSlabs(), before + 1, 'twice is once');
  const b = takeSlab(10);
  assert.equal(b.buffer, a.buffer, 'the same memory serves again');
  assert.ok(!isSlab(a), 'the old view is no longer the slab (its length was changed)');
});
