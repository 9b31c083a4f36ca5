// A directory that comes out of a guest is a tar stream the guest made: hostile.
// extractDirectory (what `monocore cp` and files.downloadDir use) must keep every
// byte of it inside the target directory. The archives are crafted byte by byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { homedir } from 'node:os';
import { MonocoreHome } from '@monocore/engine/home';
import { extractDirectory, localCredentialPath, packDirectory } from '@monocore/client';
import { tempDir } from '../support/env.js';
import { tarArchive } from '../rootfs/tar-writer.js';

const extract = (archive: Buffer, dir: string) => extractDirectory(Readable.from([archive]), dir);

test('a hostile tar from a guest: .., absolute names, writing through its own symlink, devices, setuid: nothing outside DST', async (t) => {
  const root = tempDir('local-tar-');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const outside = join(root, 'outside');
  mkdirSync(outside);
  const dst = join(root, 'dst');

  const attempts: Array<{ name: string; archive: Buffer }> = [
    { name: 'dot-dot', archive: tarArchive([{ name: '../outside/evil', data: 'x' }]) },
    { name: 'absolute', archive: tarArchive([{ name: `${outside}/evil`, data: 'x' }]) },
    {
      name: 'through its own symlink',
      archive: tarArchive([
        { name: 'link', type: 'symlink', linkname: outside },
        { name: 'link/evil', data: 'x' },
      ]),
    },
    { name: 'hard link to a host file', archive: tarArchive([{ name: 'hl', type: 'hardlink', linkname: join(outside, 'target') }]) },
  ];
  writeFileSync(join(outside, 'target'), 'host file');
  for (const a of attempts) {
    rmSync(dst, { recursive: true, force: true });
    await extract(a.archive, dst).catch(() => undefined); // refusing (an error) is as good as skipping
    assert.deepEqual(readdirSync(outside).sort(), ['target'], `${a.name}: nothing written outside`);
    assert.equal(readFileSync(join(outside, 'target'), 'utf8'), 'host file', `${a.name}: host file untouched`);
  }

  // Devices and FIFOs are skipped (and listed); setuid/setgid bits are dropped; ordinary entries arrive.
  rmSync(dst, { recursive: true, force: true });
  const r = await extract(
    tarArchive([
      { name: 'dev', type: 'char', devmajor: 1, devminor: 3 },
      { name: 'pipe', type: 'fifo' },
      { name: 'sub', type: 'dir' },
      { name: 'sub/tool', data: '#!/bin/sh\n', mode: 0o6755 },
      { name: 'sub/data', data: 'hello' },
    ]),
    dst,
  );
  assert.deepEqual(r.skipped.sort(), ['dev (CharacterDevice)', 'pipe (FIFO)']);
  assert.equal(existsSync(join(dst, 'dev')), false);
  assert.equal(readFileSync(join(dst, 'sub', 'data'), 'utf8'), 'hello');
  assert.equal(statSync(join(dst, 'sub', 'tool')).mode & 0o7000, 0, 'no setuid/setgid');
});

test('packDirectory then extractDirectory: files, modes, nested directories and symlinks round-trip', async (t) => {
  const root = tempDir('local-tar-rt-');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const src = join(root, 'src');
  mkdirSync(join(src, 'a', 'b'), { recursive: true });
  writeFileSync(join(src, 'a', 'b', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  writeFileSync(join(src, 'top.bin'), Buffer.from([0, 1, 2, 255]));
  const parts: Buffer[] = [];
  for await (const c of packDirectory(src)) parts.push(c as Buffer);
  const dst = join(root, 'dst');
  await extractDirectory(Readable.from([Buffer.concat(parts)]), dst);
  assert.equal(readFileSync(join(dst, 'a', 'b', 'run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.equal(statSync(join(dst, 'a', 'b', 'run.sh')).mode & 0o777, 0o755);
  assert.deepEqual([...readFileSync(join(dst, 'top.bin'))], [0, 1, 2, 255]);
  assert.ok(lstatSync(join(dst, 'a')).isDirectory());
});

test("the SDK finds the local credential where the engine's MonocoreHome puts it", () => {
  const home = '/tmp/some-monocore-home';
  assert.equal(localCredentialPath({ MONOCORE_HOME: home }), new MonocoreHome(home).apiLocalTokenPath);
  assert.equal(localCredentialPath({}), new MonocoreHome(join(homedir(), '.monocore')).apiLocalTokenPath);
});
