import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isSlab } from '../streams/slabs.js';
import { RespError, RespProtocolError, RespReader, SkippedBulk, type RespLimits, type RespValue } from './resp-reader.js';

const LIMITS: RespLimits = { maxBulk: 200_000, maxArray: 16, maxDepth: 6 };
const bulk = (b: Buffer | string): Buffer => Buffer.concat([Buffer.from(`$${Buffer.byteLength(b)}\r\n`), Buffer.from(b), Buffer.from('\r\n')]);
const arr = (...items: Buffer[]): Buffer => Buffer.concat([Buffer.from(`*${items.length}\r\n`), ...items]);
/** An XREAD reply of one entry: `[[key, [[id, [k, o, c, c1, d, data]]]]]`. */
const xread = (data: Buffer): Buffer => arr(arr(bulk('inbox'), arr(arr(bulk('1-1'), arr(bulk('k'), bulk('o'), bulk('c'), bulk('c1'), bulk('d'), bulk(data))))));
const expected = (data: RespValue): RespValue => [[Buffer.from('inbox'), [[Buffer.from('1-1'), [Buffer.from('k'), Buffer.from('o'), Buffer.from('c'), Buffer.from('c1'), Buffer.from('d'), data]]]]];

function collect(limits = LIMITS): { reader: RespReader; replies: RespValue[] } {
  const replies: RespValue[] = [];
  return { reader: new RespReader(limits, (v) => replies.push(v)), replies };
}

/** Drives the reader as a socket with `onread` would: each read fills at most `size(i)` bytes of its target. */
function viaTargets(reader: RespReader, bytes: Buffer, size: (i: number) => number): void {
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const t = reader.target();
    assert.ok(t.length > 0, 'the reader always offers room');
    const n = Math.min(t.length, size(i), bytes.length - off);
    bytes.copy(t, 0, off, off + n);
    off += n;
    reader.wrote(n);
  }
}

test('RespReader: every kind of value, split at every byte', () => {
  const wire = Buffer.concat([
    Buffer.from('+OK\r\n:42\r\n:-7\r\n$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n-ERR wrong type\r\n'),
    arr(bulk('a'), arr(bulk('b\r\nc'), Buffer.from(':1\r\n')), Buffer.from('$-1\r\n')),
  ]);
  const want: RespValue[] = ['OK', 42, -7, null, null, [], Buffer.alloc(0), new RespError('ERR wrong type'), [Buffer.from('a'), [Buffer.from('b\r\nc'), 1], null]];
  for (let cut = 0; cut <= wire.length; cut++) {
    for (const cut2 of [cut, Math.min(wire.length, cut + 3)]) {
      const { reader, replies } = collect();
      reader.feed(wire.subarray(0, cut));
      reader.feed(wire.subarray(cut, cut2));
      reader.feed(wire.subarray(cut2));
      assert.deepEqual(replies, want, `cut at ${cut}/${cut2}`);
    }
  }
  const { reader, replies } = collect();
  for (const b of wire) reader.feed(Buffer.from([b]));
  assert.deepEqual(replies, want, 'a byte at a time');
});

test('RespReader: a large field is read into a slab, whatever the reads it comes in', () => {
  const data = randomBytes(150_000);
  const wire = Buffer.concat([xread(data), Buffer.from('+NEXT\r\n')]);
  const sizes: Array<(i: number) => number> = [() => 1 << 20, () => 65536, () => 1000, (i) => 1 + ((i * 7919) % 5000), () => 1];
  for (const size of sizes) {
    const { reader, replies } = collect();
    viaTargets(reader, wire, size);
    assert.deepEqual(replies, [expected(data), 'NEXT']);
    const field = ((((replies[0] as RespValue[])[0] as RespValue[])[1] as RespValue[])[0] as RespValue[])[1] as Buffer[];
    assert.ok(isSlab(field[5]!), 'the data field is a slab');
    assert.ok(!isSlab(field[1]!), 'a short field is not');
  }
  // Cut around the field's header, its first and last bytes and its CRLF, at every byte.
  const at = wire.indexOf(data.subarray(0, 16));
  const cuts = [...Array(80).keys()].flatMap((i) => [at - 40 + i, at + data.length - 40 + i]);
  for (const cut of cuts) {
    const { reader, replies } = collect();
    viaTargets(reader, wire.subarray(0, cut), () => 1 << 20);
    reader.feed(wire.subarray(cut));
    assert.deepEqual(replies, [expected(data), 'NEXT'], `cut at ${cut}`);
  }
});

test('RespReader: a field over the limit is skipped, and what follows is read', () => {
  const data = randomBytes(LIMITS.maxBulk + 1);
  const wire = Buffer.concat([xread(data), xread(Buffer.from('small'))]);
  for (const size of [() => 1 << 20, () => 4096, (i: number) => 1 + ((i * 31) % 70_000)]) {
    const { reader, replies } = collect();
    viaTargets(reader, wire, size);
    assert.deepEqual(replies, [expected(new SkippedBulk(data.length)), expected(Buffer.from('small'))]);
  }
});

test('RespReader: bytes that are not RESP fail the reader, for good', () => {
  const bad: Array<[string, Buffer]> = [
    ['an unknown type', Buffer.from('?what\r\n')],
    ['a RESP3 type', Buffer.from('_\r\n')],
    ['a bad length', Buffer.from('$abc\r\n')],
    ['a negative length', Buffer.from('$-2\r\n')],
    ['a line without CR', Buffer.from('+OK\n')],
    ['a bulk string without its CRLF', Buffer.from('$3\r\nabcXY')],
    ['an array over the limit', Buffer.from(`*${LIMITS.maxArray + 1}\r\n`)],
    ['arrays nested too deep', Buffer.from('*1\r\n'.repeat(LIMITS.maxDepth + 1))],
    ['a line that never ends', Buffer.alloc(70_000, 0x2b)],
    ['a length of too many digits', Buffer.from(`$${'9'.repeat(20)}\r\n`)],
  ];
  for (const [what, wire] of bad) {
    const { reader, replies } = collect();
    assert.throws(() => reader.feed(wire), RespProtocolError, what);
    assert.throws(() => reader.feed(Buffer.from('+OK\r\n')), RespProtocolError, `${what}: still failed`);
    assert.deepEqual(replies, [], what);
  }
});
