import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MonocoreHome } from '../../home/index.js';
import { removeImageRootfs } from '../../rootfs/image-rootfs.js';
import { TemplateStore, TEMPLATE_FORMAT, type TemplateShape } from './template-store.js';

// TemplateStore on a real filesystem (no VM): keyed lookups that refuse anything of another
// shape, the build lock, the size budget, and removal with the image.
const root = mkdtempSync(join(tmpdir(), 'mc-tpl-store-'));
after(() => rmSync(root, { recursive: true, force: true }));

const image = `sha256:${'ab'.repeat(32)}`;
const shape = (over: Partial<TemplateShape> = {}): TemplateShape => ({
  format: TEMPLATE_FORMAT, monocore: '0.3.0', qemu: 'QEMU emulator version 7.2.x', kernel: '/k:1:2', initramfs: 'ff',
  imageId: image, imageBlock: '/b:3:4', machine: 'aa', hostCpu: '', guest: 'bb', diskMib: 256, ramMib: 256, ...over,
});

async function save(store: TemplateStore, s: TemplateShape, stateBytes = 1000): Promise<void> {
  const staged = await store.stage(s);
  writeFileSync(join(staged, 'state.bin'), Buffer.alloc(stateBytes, 1));
  writeFileSync(join(staged, 'upper.ext4'), Buffer.alloc(4096, 2));
  await store.commit(s, staged, { state: { sha256: 'x', bytes: stateBytes }, createdAt: new Date().toISOString(), saveMs: 1, macs: [] });
}

test('lookup finds a template only for its exact shape; one whose stored shape differs or whose state is truncated is deleted with the reason', async () => {
  const home = new MonocoreHome(join(root, 'h1'));
  mkdirSync(join(home.imageRootfsDir, 'ab'.repeat(32)), { recursive: true });
  const store = new TemplateStore(home, 1024);
  assert.match((await store.lookup(shape())).reason, /no template yet/);
  await save(store, shape());
  const found = await store.lookup(shape());
  assert.ok(found.template, found.reason);
  assert.equal(found.template.meta.state.bytes, 1000);
  // Another QEMU (or anything else in the shape) is another key: not found, the first stays.
  assert.equal((await store.lookup(shape({ qemu: 'QEMU emulator version 8.0' }))).template, undefined);
  assert.ok((await store.lookup(shape())).template);
  // A meta.json whose shape does not match its directory (written by another build) is never used.
  const dir = store.dir(shape());
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ ...found.template.meta, shape: shape({ monocore: '0.2.9' }) }));
  const stale = await store.lookup(shape());
  assert.equal(stale.template, undefined);
  assert.match(stale.reason, /monocore differs .*deleted/);
  assert.equal(existsSync(dir), false);
  // A truncated state file.
  await save(store, shape());
  truncateSync(join(store.dir(shape()), 'state.bin'), 10);
  const cut = await store.lookup(shape());
  assert.equal(cut.template, undefined);
  assert.match(cut.reason, /10 bytes, 1000 were saved/);
});

test('claim: one builder at a time per shape', async () => {
  const home = new MonocoreHome(join(root, 'h2'));
  mkdirSync(join(home.imageRootfsDir, 'ab'.repeat(32)), { recursive: true });
  const store = new TemplateStore(home, 1024);
  const first = await store.claim(shape());
  assert.ok(first);
  assert.equal(await store.claim(shape()), undefined, 'a second first start boots cold meanwhile');
  assert.ok(await store.claim(shape({ ramMib: 512 })), 'another shape is another lock');
  await first.release();
  assert.ok(await store.claim(shape()));
});

test('the budget keeps the most recently used templates; removing the image removes its templates', async () => {
  const home = new MonocoreHome(join(root, 'h3'));
  mkdirSync(join(home.imageRootfsDir, 'ab'.repeat(32)), { recursive: true });
  const store = new TemplateStore(home, 1); // 1 MiB: room for one 700 KiB template
  await save(store, shape({ ramMib: 128 }), 700 * 1024);
  await new Promise((r) => setTimeout(r, 20));
  await save(store, shape({ ramMib: 256 }), 700 * 1024); // committing it prunes the older one
  assert.equal((await store.lookup(shape({ ramMib: 128 }))).template, undefined);
  assert.ok((await store.lookup(shape({ ramMib: 256 }))).template);
  assert.equal(await removeImageRootfs(home, image), true);
  assert.equal((await store.list()).length, 0);
});
