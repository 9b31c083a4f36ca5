import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GroupSwitch, groupMac } from './group-switch.js';

const frame = (dst: string, src: string, payload: string): Buffer => {
  const mac = (m: string) => Buffer.from(m.split(':').map((h) => parseInt(h, 16)));
  const body = Buffer.concat([mac(dst), mac(src), Buffer.from([0x08, 0x00]), Buffer.from(payload)]);
  const hdr = Buffer.alloc(4);
  hdr.writeUInt32BE(body.length);
  return Buffer.concat([hdr, body]);
};

function received(sock: Socket): { frames: string[] } {
  const out = { frames: [] as string[] };
  let buf = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const len = buf.readUInt32BE(0);
      out.frames.push(buf.subarray(4 + 14, 4 + len).toString());
      buf = buf.subarray(4 + len);
    }
  });
  sock.resume();
  return out;
}

const tick = (ms = 100) => new Promise((r) => setTimeout(r, ms));

test('GroupSwitch: floods broadcasts, learns unicast, drops spoofed sources, and two switches never mix', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-sw-'));
  const g1 = await GroupSwitch.listen(join(dir, 'g1.sock'));
  const g2 = await GroupSwitch.listen(join(dir, 'g2.sock'));
  const A = groupMac('10.88.0.2/24');
  const B = groupMac('10.88.0.3/24');
  const C = groupMac('10.88.0.4/24');
  assert.equal(A, '52:54:0a:58:00:02');
  const [a, b, c] = await Promise.all([g1.connectPort(A), g1.connectPort(B), g2.connectPort(C)]);
  const [ra, rb, rc] = [received(a), received(b), received(c)];
  await tick();
  a.write(frame('ff:ff:ff:ff:ff:ff', A, 'hello-all'));
  await tick();
  assert.deepEqual(rb.frames, ['hello-all']);
  assert.deepEqual(rc.frames, [], 'another group never sees it');
  b.write(frame(A, B, 'to-a'));
  b.write(frame('ff:ff:ff:ff:ff:ff', A, 'spoofed-as-a'));
  c.write(frame('ff:ff:ff:ff:ff:ff', C, 'from-g2'));
  await tick();
  assert.deepEqual(ra.frames, ['to-a']);
  assert.deepEqual(rb.frames, ['hello-all']);
  for (const s of [a, b, c]) s.destroy();
  await g1.close();
  await g2.close();
  rmSync(dir, { recursive: true, force: true });
});
