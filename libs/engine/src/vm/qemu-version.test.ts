import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { QEMU_VERSION_FILE, qemuVersion } from './qemu-version.js';

// qemuVersion() against stand-in "QEMU" scripts that count their runs: the answer is remembered
// in the run dir per binary, and asked again whenever the file behind the path changes.
const root = mkdtempSync(join(tmpdir(), 'mc-qemu-version-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh dir with a fake QEMU printing `version`, its run counter and a run dir. */
function fake(version: string): { dir: string; bin: string; runDir: string; runs: () => number; write: (v: string, exit?: number) => void } {
  const dir = join(root, `c${n++}`);
  mkdirSync(dir);
  const bin = join(dir, 'qemu-system-x86_64');
  const counter = join(dir, 'runs');
  // Rewritten in place (same inode), as an upgrade that overwrites the file would.
  const write = (v: string, exit = 0): void =>
    writeFileSync(bin, `#!/bin/sh\necho x >> '${counter}'\necho '${v}'\necho 'Copyright (c) 2003-2022'\nexit ${exit}\n`, { mode: 0o755 });
  write(version);
  return { dir, bin, runDir: join(dir, 'run'), runs: () => readFileSync(counter, 'utf8').split('\n').filter(Boolean).length, write };
}

test('qemuVersion: runs --version once, then answers from <run dir>/qemu-version.json', () => {
  const q = fake('QEMU emulator version 7.2.22');
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(q.runs(), 1);
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(q.runs(), 1, 'remembered');
  const cached = JSON.parse(readFileSync(join(q.runDir, QEMU_VERSION_FILE), 'utf8'));
  assert.equal(cached.binaries[q.bin].version, 'QEMU emulator version 7.2.22');
  const st = statSync(q.bin, { bigint: true });
  assert.equal(cached.binaries[q.bin].identity, `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`);
});

test('qemuVersion: a new binary at the path (other size, mtime or inode) is asked again', () => {
  const q = fake('QEMU emulator version 7.2.22');
  qemuVersion(q.bin, q.runDir);
  // Upgraded in place: other contents and size.
  q.write('QEMU emulator version 8.2.2');
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 8.2.2');
  assert.equal(q.runs(), 2);
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 8.2.2');
  assert.equal(q.runs(), 2);
  // Same size, only the mtime moved (rewritten with the same length).
  q.write('QEMU emulator version 8.2.3');
  const t = statSync(q.bin).mtimeMs / 1000 + 5;
  utimesSync(q.bin, t, t);
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 8.2.3');
  assert.equal(q.runs(), 3);
  // Replaced by another file (a package manager's rename) with the same size and mtime: the inode differs.
  const before = statSync(q.bin);
  const next = join(q.dir, 'next');
  writeFileSync(next, readFileSync(q.bin, 'utf8').replace('8.2.3', '8.2.4'), { mode: 0o755 });
  utimesSync(next, before.atime, before.mtime);
  renameSync(next, q.bin);
  assert.equal(statSync(q.bin).size, before.size);
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 8.2.4');
  assert.equal(q.runs(), 4);
});

test('qemuVersion: a symlink is followed (retargeted: asked again); a PATH name is resolved', () => {
  const q = fake('QEMU emulator version 7.2.22');
  const other = join(q.dir, 'other-qemu');
  writeFileSync(other, `#!/bin/sh\necho 'QEMU emulator version 9.0.0'\n`, { mode: 0o755 });
  const link = join(q.dir, 'qemu-link');
  symlinkSync(q.bin, link);
  assert.equal(qemuVersion(link, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(qemuVersion(link, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(q.runs(), 1);
  unlinkSync(link);
  symlinkSync(other, link);
  assert.equal(qemuVersion(link, q.runDir), 'QEMU emulator version 9.0.0');
  const path = process.env.PATH;
  process.env.PATH = `${q.dir}:${path}`;
  try {
    assert.equal(qemuVersion('qemu-system-x86_64', q.runDir), 'QEMU emulator version 7.2.22');
    assert.equal(q.runs(), 2, 'its own entry, by resolved path');
    assert.equal(qemuVersion('qemu-system-x86_64', q.runDir), 'QEMU emulator version 7.2.22');
    assert.equal(q.runs(), 2);
  } finally {
    process.env.PATH = path;
  }
});

test('qemuVersion: a failure is reported and never remembered; a damaged cache file is ignored', () => {
  const q = fake('QEMU emulator version 7.2.22');
  q.write('qemu: broken', 1);
  assert.match(qemuVersion(q.bin, q.runDir), /does not run/);
  assert.match(qemuVersion(q.bin, q.runDir), /does not run/);
  assert.equal(q.runs(), 2);
  q.write('QEMU emulator version 7.2.22');
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 7.2.22');
  writeFileSync(join(q.runDir, QEMU_VERSION_FILE), '{"format":1,"binaries":');
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(q.runs(), 4);
  assert.equal(qemuVersion(q.bin, q.runDir), 'QEMU emulator version 7.2.22');
  assert.equal(q.runs(), 4);
  assert.match(qemuVersion(join(q.dir, 'missing-qemu'), q.runDir), /does not run/);
});
