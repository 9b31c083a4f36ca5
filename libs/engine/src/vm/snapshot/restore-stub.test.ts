import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MonocoreHome } from '../../home/index.js';
import { restoreStubFiles, STUB_INITRD_BYTES, stubKernel, writeRestoreStubFiles, XEN_ELFNOTE_PHYS32_ENTRY } from './restore-stub.js';

// The restore stub's bytes parsed the way QEMU's ELF loader reads them (no VM here: the restores
// in test/vm/templates.test.ts and test/sandbox/sandbox-snapshots.test.ts boot QEMU with it).
const root = mkdtempSync(join(tmpdir(), 'mc-restore-stub-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('stubKernel: a 64-bit x86-64 ELF whose PVH note points at hlt; jmp inside its one PT_LOAD segment', () => {
  const b = stubKernel();
  assert.ok(b.length < 1024, `${b.length} bytes`);
  assert.ok(b.length >= 0x206, 'covers the bzImage magic QEMU checks at 0x202');
  assert.equal(b.readUInt32LE(0x202), 0, 'no "HdrS" bzImage magic');
  assert.equal(b.subarray(0, 4).toString('latin1'), '\x7fELF');
  assert.equal(b[4], 2, 'ELFCLASS64');
  assert.equal(b[5], 1, 'little-endian');
  assert.equal(b.readUInt16LE(18), 62, 'EM_X86_64');
  assert.equal(b.readUInt32LE(48) & 0x00010004, 0, 'no e_flags QEMU\'s elfboot refuses');
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  const phdrs = Array.from({ length: phnum }, (_, i) => {
    const at = phoff + i * phentsize;
    return {
      type: b.readUInt32LE(at),
      offset: Number(b.readBigUInt64LE(at + 8)),
      paddr: Number(b.readBigUInt64LE(at + 24)),
      filesz: Number(b.readBigUInt64LE(at + 32)),
      memsz: Number(b.readBigUInt64LE(at + 40)),
      align: Number(b.readBigUInt64LE(at + 48)),
    };
  });
  const loads = phdrs.filter((p) => p.type === 1);
  assert.equal(loads.length, 1, 'one PT_LOAD');
  const load = loads[0]!;
  assert.ok(load.offset + load.filesz <= b.length && load.filesz <= load.memsz);
  const note = phdrs.find((p) => p.type === 4);
  assert.ok(note, 'a PT_NOTE');
  // QEMU: n_namesz, n_descsz, n_type (32-bit each), then the name and the descriptor, each
  // rounded up to the note segment's p_align; for a 64-bit ELF the entry is read as 64 bits.
  const namesz = b.readUInt32LE(note.offset);
  const descsz = b.readUInt32LE(note.offset + 4);
  assert.equal(b.readUInt32LE(note.offset + 8), XEN_ELFNOTE_PHYS32_ENTRY);
  assert.equal(b.subarray(note.offset + 12, note.offset + 12 + namesz).toString('latin1'), 'Xen\0');
  assert.equal(descsz, 8);
  const align = (n: number): number => Math.ceil(n / note.align) * note.align;
  assert.ok(note.offset + 12 + align(namesz) + align(descsz) <= note.offset + note.filesz);
  const entry = Number(b.readBigUInt64LE(note.offset + 12 + align(namesz)));
  assert.ok(entry >= load.paddr && entry + 3 <= load.paddr + load.filesz, `entry ${entry.toString(16)} inside the PT_LOAD segment`);
  const code = b.subarray(load.offset + (entry - load.paddr), load.offset + (entry - load.paddr) + 3);
  assert.deepEqual([...code], [0xf4, 0xeb, 0xfd], 'hlt; jmp to the hlt');
  assert.equal(entry, Number(b.readBigUInt64LE(24)), 'e_entry is the same code');
});

test('restoreStubFiles: written once into the run dir, 0644 whatever the umask, repaired when wrong', async () => {
  const home = new MonocoreHome(join(root, 'home'));
  const oldMask = process.umask(0o077);
  try {
    const files = await restoreStubFiles(home);
    assert.equal(files.kernel, join(home.runDir, 'restore-stub-vmlinux'));
    assert.deepEqual(readFileSync(files.kernel), stubKernel());
    assert.deepEqual(readFileSync(files.initrd), Buffer.alloc(STUB_INITRD_BYTES));
    for (const f of [files.kernel, files.initrd]) assert.equal(statSync(f).mode & 0o777, 0o644, f);
    const before = [statSync(files.kernel), statSync(files.initrd)].map((s) => [s.ino, s.mtimeMs]);
    // Again (as another process would, without this one's memo): nothing is rewritten.
    assert.deepEqual(await restoreStubFiles(home), files);
    await writeRestoreStubFiles(home.runDir);
    assert.deepEqual([statSync(files.kernel), statSync(files.initrd)].map((s) => [s.ino, s.mtimeMs]), before);
    // A wrong file (truncated, or not readable by others) is replaced.
    writeFileSync(files.kernel, 'x');
    chmodSync(files.initrd, 0o600);
    await writeRestoreStubFiles(home.runDir);
    assert.deepEqual(readFileSync(files.kernel), stubKernel());
    assert.equal(statSync(files.initrd).mode & 0o777, 0o644);
  } finally {
    process.umask(oldMask);
  }
});

test('restoreStubFiles: another uid reads them through /proc/self/fd/N, as QEMU does', { skip: process.getuid?.() !== 0 && !process.env.CI && 'needs root (QEMU runs as a uid of its own only then); never skipped in CI' }, async () => {
  const files = await restoreStubFiles(new MonocoreHome(join(root, 'home-uid')));
  // The temp dir above is 0700: only the fd gets another uid to the file, like QEMU's -kernel /proc/self/fd/N.
  const fd = openSync(files.kernel, 'r');
  try {
    const r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', '--', 'sh', '-c', 'wc -c < /proc/self/fd/3'], { stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(Number(r.stdout.trim()), stubKernel().length);
  } finally {
    closeSync(fd);
  }
});
