/**
 * VmSpec.user (the image's OCI User) applied by the guest init, in real TCG
 * boots: a numeric uid:gid without passwd entries, and an unknown name.
 */
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyLayer, isMonocoreError, LibkrunBackend, OWNERSHIP_FILE, UnpackSession, type OwnershipRecordFile } from '@monocore/engine';
import { backend, spec, testRootfs } from './vm-fixtures.js';

const qemu = backend();
const CAP_NET_RAW_EP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

test('qemu: spec.user "1234:5678" runs the command as that uid/gid with only that group; an unknown user name exits 125 naming it', async () => {
  const ok = spec('user-num', {
    user: '1234:5678',
    command: '/bin/sh',
    // Unprivileged for real: root-owned /etc is not writable (the overlay upper keeps the image's owners).
    args: ['-c', 'echo "$(id -u) $(id -g) $(id -G) HOME=$HOME"; touch /etc/x 2>/dev/null && echo wrote-etc || echo etc-denied'],
  });
  const bad = spec('user-missing', { user: 'nosuchuser', command: '/bin/true' });
  const [hok, hbad] = await Promise.all([qemu.start(ok), qemu.start(bad)]);
  const badStarted = await hbad.started.then(() => true, () => false);
  const [eok, ebad] = await Promise.all([hok.wait(), hbad.wait()]);
  assert.deepEqual(eok, { exitCode: 0, reason: 'exited' }, ok.stderr.text);
  assert.equal(ok.stdout.text, '1234 5678 5678 HOME=/\netc-denied\n');
  assert.equal(ebad.exitCode, 125, `${JSON.stringify(ebad)} stderr=${bad.stderr.text}`);
  assert.equal(ebad.reason, 'exited');
  assert.equal(badStarted, false, 'started rejects: the command never ran');
  assert.match(bad.stderr.text, /user "nosuchuser": no such user in \/etc\/passwd/);
  for (const s of [ok, bad]) rmSync(s.stateDir, { recursive: true, force: true });
});

test('libkrun: a non-root spec.user is refused with MC_VM_LIBKRUN_UNSUPPORTED naming the field', async () => {
  const s = spec('krun-user', { user: '1000' });
  await assert.rejects(new LibkrunBackend().start(s), (e: unknown) => isMonocoreError(e, 'MC_VM_LIBKRUN_UNSUPPORTED') && /user: "1000"/.test(e.message));
});

test('qemu: a file capability from an image layer takes effect in the guest for a non-root user (from the block image; from ownership.json when unpacked as non-root)', async () => {
  // An image = the test rootfs plus one layer adding /capbin/grep (busybox) with
  // security.capability = cap_net_raw+ep, unpacked by the real unpacker (as root: the
  // xattr is on the host file, and mkfs.erofs carries it into the block image).
  const capImage = async (): Promise<{ imageDir: string; root: string; record: OwnershipRecordFile }> => {
    const imageDir = mkdtempSync(join(tmpdir(), 'mc-capimg-'));
    const root = join(imageDir, 'rootfs');
    cpSync(testRootfs(), root, { recursive: true, verbatimSymlinks: true });
    const busybox = readFileSync(join(root, 'bin/busybox'));
    const body = Buffer.concat([Buffer.from(' SCHILY.xattr.security.capability='), CAP_NET_RAW_EP, Buffer.from('\n')]);
    let len = body.length + 2;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    const layer = join(imageDir, 'layer.tar');
    writeFileSync(layer, tarFrom([
      { name: 'capbin/', type: '5', data: Buffer.alloc(0), mode: 0o755 },
      { name: 'PaxHeader', type: 'x', data: Buffer.concat([Buffer.from(String(len)), body]), mode: 0o644 },
      { name: 'capbin/grep', type: '0', data: busybox, mode: 0o755 },
    ]));
    const session = new UnpackSession(root);
    await applyLayer(layer, root, { session, layer: 'caps' });
    await session.finish();
    return { imageDir, root, record: session.record('sha256:' + '0'.repeat(64)) };
  };
  const asRoot = await capImage();
  writeFileSync(join(asRoot.imageDir, OWNERSHIP_FILE), JSON.stringify(asRoot.record));
  // The non-root unpacker's result: no xattr on the host file (it cannot set one), the
  // capability only in ownership.json (ownershipRecorded): the guest init applies it.
  const nonRoot = await capImage();
  const grep = join(nonRoot.root, 'capbin/grep');
  copyFileSync(grep, `${grep}.plain`); // copyFile copies no xattrs
  renameSync(`${grep}.plain`, grep);
  assert.deepEqual(nonRoot.record.capabilities?.map((c) => c.path), ['capbin/grep']);
  writeFileSync(join(nonRoot.imageDir, OWNERSHIP_FILE), JSON.stringify({ ...nonRoot.record, ownershipRecorded: true }));
  const run = (id: string, rootfs: string) => spec(id, { rootfs, user: '1000:1000', command: '/capbin/grep', args: ['-E', '^Cap(Prm|Eff)', '/proc/self/status'] });
  const specs = [run('caps', asRoot.root), run('caps-recorded', nonRoot.root)];
  const exits = await Promise.all(specs.map(async (s) => (await qemu.start(s)).wait()));
  for (const [i, s] of specs.entries()) {
    assert.deepEqual(exits[i], { exitCode: 0, reason: 'exited' }, s.stderr.text);
    assert.equal(s.stdout.text, 'CapPrm:\t0000000000002000\nCapEff:\t0000000000002000\n', `${s.id}: CAP_NET_RAW (bit 13), and nothing else`);
    rmSync(s.stateDir, { recursive: true, force: true });
  }
  for (const d of [asRoot.imageDir, nonRoot.imageDir]) rmSync(d, { recursive: true, force: true });
});

/** A plain ustar archive (enough for this test's three entries). */
function tarFrom(entries: Array<{ name: string; type: string; data: Buffer; mode: number }>): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    h.write(e.name, 0);
    h.write(e.mode.toString(8).padStart(7, '0') + '\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(e.data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('14000000000\0', 136);
    h.write('        ', 148);
    h.write(e.type, 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, e.data, Buffer.alloc((512 - (e.data.length % 512)) % 512));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}
