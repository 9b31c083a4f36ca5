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

/** Waits (polling) until `cond` holds: the switch forwards asynchronously. */
async function eventually(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

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
  await eventually('every port registered', () => g1.portCount === 2 && g2.portCount === 1);
  a.write(frame('ff:ff:ff:ff:ff:ff', A, 'hello-all'));
  await eventually('b receives the broadcast', () => rb.frames.length >= 1);
  assert.deepEqual(rb.frames, ['hello-all']);
  assert.deepEqual(rc.frames, [], 'another group never sees it (g1 wrote it to every port it has, at once)');
  b.write(frame(A, B, 'to-a'));
  b.write(frame('ff:ff:ff:ff:ff:ff', A, 'spoofed-as-a'));
  c.write(frame('ff:ff:ff:ff:ff:ff', C, 'from-g2'));
  b.write(frame(A, B, 'sentinel')); // frames of one port are handled in order: once a has this, the spoof was judged
  await eventually('a receives the sentinel', () => ra.frames.includes('sentinel'));
  assert.deepEqual(ra.frames, ['to-a', 'sentinel'], 'the spoofed source was dropped');
  assert.deepEqual(rb.frames, ['hello-all']);
  for (const s of [a, b, c]) s.destroy();
  await g1.close();
  await g2.close();
  rmSync(dir, { recursive: true, force: true });
});
