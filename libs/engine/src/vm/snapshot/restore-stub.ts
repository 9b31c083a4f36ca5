import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MonocoreHome } from '../../home/index.js';

/*
 * Boot files of a restore (docs/SNAPSHOTS.md "Boot files of a restore"). QEMU's x86 loader
 * opens, maps and parses `-kernel` and `-initrd` even when the VM is restored with `-incoming`,
 * whose state then replaces all of guest memory and every CPU register: the 66 MB vmlinux and
 * the ~7 MB initramfs are loaded for nothing (QEMU 7.2 maps them and reads ~8 MB of the
 * vmlinux). A restored VM gets these stand-ins instead: the smallest ELF QEMU's PVH loader
 * accepts and a small initrd. Neither is ever run or read by the guest. The machine shape (templates' key, the
 * paused-VM check) hashes boot files as placeholders, so a VM captured with the real kernel
 * restores into a QEMU started with the stub.
 */

/** Where the stub is loaded in guest-physical memory (1 MiB, where a Linux kernel goes). */
const LOAD_ADDR = 0x100000;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const PHDR_COUNT = 2;
const NOTE_OFFSET = EHDR_SIZE + PHDR_COUNT * PHDR_SIZE; // 0xb0
const NOTE_NAME = 'Xen\0';
/** Xen's public elfnote.h: the 32-bit physical entry point of the x86/HVM direct boot ABI (PVH). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const NOTE_SIZE = 12 + 4 + 8; // n_namesz, n_descsz, n_type; "Xen\0"; a 64-bit entry address (Linux writes it as _ASM_PTR)
const CODE_OFFSET = NOTE_OFFSET + NOTE_SIZE; // 0xc8
/** hlt; jmp back to the hlt. Never runs: the incoming state replaces memory and CPU state. */
const CODE = Buffer.from([0xf4, 0xeb, 0xfd]);
/**
 * The file is padded with zeros past 0x205: QEMU reads up to 8 KiB of the kernel into an
 * uninitialised stack buffer and checks offset 0x202 for the bzImage magic "HdrS" before it
 * tries PVH; a shorter file would leave that check to whatever was on the stack.
 */
const FILE_SIZE = 0x210;

/** The stub kernel: an x86-64 ELF with one PT_LOAD segment holding a PVH entry note and the code the note points at. */
export function stubKernel(): Buffer {
  const b = Buffer.alloc(FILE_SIZE);
  // ELF header
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // ELFDATA2LSB
  b[6] = 1; // EV_CURRENT
  b.writeUInt16LE(2, 16); // e_type ET_EXEC
  b.writeUInt16LE(62, 18); // e_machine EM_X86_64
  b.writeUInt32LE(1, 20); // e_version
  b.writeBigUInt64LE(BigInt(LOAD_ADDR + CODE_OFFSET), 24); // e_entry
  b.writeBigUInt64LE(BigInt(EHDR_SIZE), 32); // e_phoff
  b.writeBigUInt64LE(0n, 40); // e_shoff: no sections
  b.writeUInt32LE(0, 48); // e_flags
  b.writeUInt16LE(EHDR_SIZE, 52); // e_ehsize
  b.writeUInt16LE(PHDR_SIZE, 54); // e_phentsize
  b.writeUInt16LE(PHDR_COUNT, 56); // e_phnum
  b.writeUInt16LE(64, 58); // e_shentsize
  // e_shnum, e_shstrndx: 0
  const phdr = (at: number, type: number, flags: number, offset: number, size: number, align: number): void => {
    b.writeUInt32LE(type, at);
    b.writeUInt32LE(flags, at + 4);
    b.writeBigUInt64LE(BigInt(offset), at + 8); // p_offset
    b.writeBigUInt64LE(BigInt(LOAD_ADDR + offset), at + 16); // p_vaddr
    b.writeBigUInt64LE(BigInt(LOAD_ADDR + offset), at + 24); // p_paddr (what QEMU loads at)
    b.writeBigUInt64LE(BigInt(size), at + 32); // p_filesz
    b.writeBigUInt64LE(BigInt(size), at + 40); // p_memsz
    b.writeBigUInt64LE(BigInt(align), at + 48);
  };
  phdr(EHDR_SIZE, 1 /* PT_LOAD */, 5 /* R+X */, 0, FILE_SIZE, 0x1000); // the whole file: headers, note and code
  phdr(EHDR_SIZE + PHDR_SIZE, 4 /* PT_NOTE */, 4 /* R */, NOTE_OFFSET, NOTE_SIZE, 4);
  // The note: QEMU finds it by owner and type and reads the entry after the 4-aligned name.
  b.writeUInt32LE(NOTE_NAME.length, NOTE_OFFSET);
  b.writeUInt32LE(8, NOTE_OFFSET + 4);
  b.writeUInt32LE(XEN_ELFNOTE_PHYS32_ENTRY, NOTE_OFFSET + 8);
  b.write(NOTE_NAME, NOTE_OFFSET + 12, 'latin1');
  b.writeBigUInt64LE(BigInt(LOAD_ADDR + CODE_OFFSET), NOTE_OFFSET + 16);
  CODE.copy(b, CODE_OFFSET);
  return b;
}

/** The stub initrd: zeros (QEMU only copies it into fw_cfg; the restored guest never reads it). */
export const STUB_INITRD_BYTES = 512;

export const RESTORE_STUB_KERNEL = 'restore-stub-vmlinux';
export const RESTORE_STUB_INITRD = 'restore-stub-initrd';

const written = new Map<string, Promise<{ kernel: string; initrd: string }>>();

/**
 * The stub kernel and initrd in the home's run dir, written the first time (per process, and
 * only when the files there are not already right), mode 0644: QEMU runs as a uid of its own
 * and reopens them through /proc/self/fd/N, which checks the file's own mode.
 */
export function restoreStubFiles(home: MonocoreHome): Promise<{ kernel: string; initrd: string }> {
  const dir = home.runDir;
  let p = written.get(dir);
  if (!p) {
    p = writeRestoreStubFiles(dir);
    written.set(dir, p);
    p.catch(() => written.delete(dir)); // a later start retries
  }
  return p;
}

/** restoreStubFiles() without the per-process memo: writes each file unless it is already right. */
export async function writeRestoreStubFiles(dir: string): Promise<{ kernel: string; initrd: string }> {
  await mkdir(dir, { recursive: true });
  const kernel = join(dir, RESTORE_STUB_KERNEL);
  const initrd = join(dir, RESTORE_STUB_INITRD);
  await ensureFile(kernel, stubKernel());
  await ensureFile(initrd, Buffer.alloc(STUB_INITRD_BYTES));
  return { kernel, initrd };
}

/** Writes `path` atomically (temp file + rename) unless it already holds `bytes` with mode 0644. */
async function ensureFile(path: string, bytes: Buffer): Promise<void> {
  try {
    const [st, cur] = await Promise.all([stat(path), readFile(path)]);
    if ((st.mode & 0o777) === 0o644 && cur.equals(bytes)) return;
  } catch {
    // missing: write it
  }
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, bytes, { mode: 0o644 });
    await chmod(tmp, 0o644); // the umask may have taken bits away
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}
