import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RootResolver, RootResolveError } from './root-resolver.js';

test('RootResolver follows symlinks with the root as "/" and never climbs above it', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'mc-resolver-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const root = join(base, 'root');
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  symlinkSync('usr/lib', join(root, 'lib')); // relative
  symlinkSync('/usr', join(root, 'abs')); // absolute: the root's /usr
  symlinkSync('../../../../../..', join(root, 'up')); // climbs: stops at the root
  symlinkSync(base, join(root, 'host')); // a host path: re-rooted
  symlinkSync('loop2', join(root, 'loop1'));
  symlinkSync('loop1', join(root, 'loop2'));
  writeFileSync(join(root, 'file'), '');
  const created: string[] = [];
  const r = new RootResolver(root, (rel) => created.push(rel));
  assert.deepEqual(await r.resolveDir(['lib'], false), ['usr', 'lib']);
  assert.deepEqual(await r.resolveDir(['abs', 'lib'], false), ['usr', 'lib']);
  assert.deepEqual(await r.resolveDir(['up', 'usr'], false), ['usr']);
  assert.deepEqual(await r.resolveDir(['lib', '..', '..', '..', 'usr'], false), ['usr']);
  assert.equal(await r.resolveDir(['host', 'root'], false), undefined, 'the host path does not exist inside the root');
  assert.deepEqual(await r.resolveDir(['host', 'x'], true), [...base.split('/').filter(Boolean), 'x']);
  assert.ok(existsSync(join(root, base, 'x')), 'created inside the root');
  assert.equal(existsSync(join(base, 'x')), false, 'not on the host');
  assert.ok(created.includes(base.split('/').filter(Boolean)[0] as string));
  await assert.rejects(r.resolveDir(['loop1', 'x'], true), (e) => e instanceof RootResolveError && e.reason === 'loop');
  await assert.rejects(r.resolveDir(['file', 'x'], true), (e) => e instanceof RootResolveError && e.reason === 'not-a-directory');
});
