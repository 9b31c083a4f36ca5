import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Command } from 'ioredis';
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
