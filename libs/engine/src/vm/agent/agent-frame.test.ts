import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeFrame, FrameDecoder, FrameError, FrameType, HandshakeScanner, MAX_PAYLOAD } from './agent-frame.js';
import { encodeRecords, parseRecords, RecordsError } from './agent-records.js';

test('frames: a round trip through the decoder, split at every byte boundary', () => {
  const frames = [
    encodeFrame(FrameType.STARTED, 0, 7, encodeRecords([['pid', '42']])),
    encodeFrame(FrameType.DATA, 1, 7, Buffer.from('hello')),
    encodeFrame(FrameType.DATA, 2, 7, Buffer.alloc(MAX_PAYLOAD, 9)),
    encodeFrame(FrameType.EXIT, 0, 7, encodeRecords([['code', '0']])),
  ];
  const all = Buffer.concat(frames);
  for (const step of [1, 3, 19, 20, 21, 4096, all.length]) {
    const d = new FrameDecoder();
    const out = [];
    for (let i = 0; i < all.length; i += step) out.push(...d.push(all.subarray(i, i + step)));
    assert.deepEqual(out.map((f) => [f.type, f.stream, f.channel, f.payload.length]), [
      [FrameType.STARTED, 0, 7, 7], [FrameType.DATA, 1, 7, 5], [FrameType.DATA, 2, 7, MAX_PAYLOAD], [FrameType.EXIT, 0, 7, 7],
    ]);
  }
  assert.throws(() => encodeFrame(FrameType.DATA, 1, 1, Buffer.alloc(MAX_PAYLOAD + 1)), RangeError);
});

test('frames: the decoder refuses a bad header before it buffers the payload', () => {
  const h = encodeFrame(FrameType.DATA, 1, 1);
  h.writeUInt32LE(1 << 30, 12); // a 1 GiB claim: refused from the header alone
  assert.throws(() => new FrameDecoder().push(h), (e) => e instanceof FrameError && /exceeds 65536/.test(e.reason));
  const bad = encodeFrame(FrameType.EXIT, 0, 1, encodeRecords([['code', '1']]));
  bad.writeUInt8(bad.readUInt8(25) ^ 1, 25);
  assert.throws(() => new FrameDecoder().push(bad), (e) => e instanceof FrameError && /CRC mismatch in a EXIT frame/.test(e.reason));
  assert.throws(() => new FrameDecoder().push(encodeFrame(FrameType.HELLO, 0, 0)), /HELLO is not one the guest may send/);
});

test('handshake scanner: finds the answer after junk and half frames, keeps little', () => {
  const nonce = 'ab'.repeat(16);
  const s = new HandshakeScanner((f) => parseRecords(f.payload).get('nonce') === nonce);
  const ack = encodeFrame(FrameType.HELLO_ACK, 0, 0, encodeRecords([['nonce', nonce]]));
  const junk = Buffer.concat([Buffer.alloc(100_000, 'M'), encodeFrame(FrameType.DATA, 1, 3, Buffer.alloc(500)).subarray(7), encodeFrame(FrameType.HELLO_ACK, 0, 0, encodeRecords([['nonce', 'x']]))]);
  assert.equal(s.push(junk), undefined);
  assert.ok(s.skipped >= 100_000);
  const found = s.push(Buffer.concat([ack, Buffer.from('rest')]));
  assert.equal(found?.frame.type, FrameType.HELLO_ACK);
  assert.equal(found?.rest.toString(), 'rest');
});

test('records: NUL-terminated key=value, strict on the guest side', () => {
  const r = parseRecords(encodeRecords([['arg', 'a b'], ['arg', ''], ['env', 'X=1=2']]));
  assert.deepEqual(r.all('arg'), ['a b', '']);
  assert.equal(r.get('env'), 'X=1=2');
  assert.throws(() => encodeRecords([['arg', 'a\0b']]), /NUL/);
  assert.throws(() => parseRecords(Buffer.from('a=1')), RecordsError);
  assert.throws(() => parseRecords(Buffer.from('=1\0')), RecordsError);
  assert.throws(() => parseRecords(Buffer.from('Bad=1\0')), RecordsError);
  assert.throws(() => parseRecords(Buffer.from('n=12x\0')).int('n'), /not an integer/);
  assert.throws(() => parseRecords(Buffer.from('n=300\0')).int('n', 255), /out of range/);
});
