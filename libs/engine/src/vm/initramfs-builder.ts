import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { MonocoreError } from '../errors/index.js';
import type { GuestKernel } from './guest-kernel.js';
import { GUEST_MODULES, resolveModuleOrder, type ModuleLoad } from './kernel-modules.js';

const run = promisify(execFile);

/** Bump when the initramfs layout changes so old cache entries are not reused. */
const LAYOUT_VERSION = '3';

export interface InitramfsOptions {
  kernel: GuestKernel;
  /** Cache directory (MonocoreHome.kernelDir). */
  cacheDir: string;
  /** busybox-static binary (default /bin/busybox, Debian's busybox-static). */
  busybox?: string;
  /** Guest init C source (default: @monocore/native's guest-init/init.c). */
  initSource?: string;
  /** C compiler (default gcc). */
  cc?: string;
}

export interface Initramfs {
  path: string;
  hash: string;
  modules: ModuleLoad[];
  /** True when this call built it (false: served from the cache). */
  built: boolean;
}

/** Locates libs/native/guest-init/init.c through the @monocore/native package. */
export function guestInitSourcePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MONOCORE_GUEST_INIT_SOURCE) return env.MONOCORE_GUEST_INIT_SOURCE;
  const require = createRequire(import.meta.url);
  const nativeEntry = require.resolve('@monocore/native'); // libs/native/dist/index.js
  return join(dirname(nativeEntry), '..', 'guest-init', 'init.c');
}

/**
 * Every source of the guest's /init binary: init.c (PID 1) and, next to it, the
 * agent and the code they share (docs/AGENT.md). All are hashed into the
 * initramfs name; the .c files are compiled into one static binary.
 */
export function guestInitSources(initSource: string): { compile: string[]; all: string[] } {
  const dir = dirname(initSource);
  const compile = [initSource, join(dir, 'agent.c'), join(dir, 'guest-common.c')];
  return { compile, all: [...compile, join(dir, 'guest-common.h')] };
}

/** The gcc arguments that build the guest init (+ agent) binary; `AGENT_BUILD` names the sources' hash. */
export function guestInitCompileArgs(initSource: string, out: string, buildId: string, staticLink = true): string[] {
  return [...(staticLink ? ['-static'] : []), '-O2', '-Wall', `-DAGENT_BUILD="${buildId}"`, '-o', out, ...guestInitSources(initSource).compile];
}

function fail(step: string, err: unknown, details: Record<string, unknown> = {}): never {
  const stderr = (err as { stderr?: string }).stderr;
  const msg = stderr && stderr.trim() ? stderr.trim().split('\n').slice(-5).join(' | ') : err instanceof Error ? err.message : String(err);
  throw new MonocoreError('MC_VM_INITRAMFS_BUILD_FAILED', `initramfs: ${step}: ${msg}`, details, { cause: err });
}

const SIG_MAGIC = Buffer.from('~Module signature appended~\n', 'ascii');

/**
 * Drops a module's appended signature. The guest kernel does not enforce
 * signatures (no secure boot/lockdown in a microVM), and checking them under
 * TCG costs ~0.5 s of every boot; the modules come from the same package as
 * the kernel, read from the host's disk, so the check would prove nothing.
 */
export function stripModuleSignature(mod: Buffer): Buffer {
  if (mod.length < SIG_MAGIC.length + 12 || !mod.subarray(mod.length - SIG_MAGIC.length).equals(SIG_MAGIC)) return mod;
  const sigInfoEnd = mod.length - SIG_MAGIC.length;
  const sigLen = mod.readUInt32BE(sigInfoEnd - 4);
  const signerLen = mod[sigInfoEnd - 9]!;
  const keyIdLen = mod[sigInfoEnd - 8]!;
  const cut = sigInfoEnd - 12 - sigLen - signerLen - keyIdLen;
  return cut > 0 ? mod.subarray(0, cut) : mod;
}

/** Whether an ELF file has no PT_INTERP program header (i.e. is statically linked). */
async function isStaticElf(file: string): Promise<boolean> {
  const buf = await readFile(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2) return false;
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    if (buf.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
  }
  return true;
}

/**
 * Builds (once) and returns the guest initramfs: our static init, busybox-static
 * (used by init for `ip`), and the kernel modules GUEST_MODULES needs, in the
 * dependency order read from the kernel's modules.* files. Cached by a content
 * hash of every input under cacheDir; an uncompressed cpio, because
 * decompressing in the guest under TCG costs more than the bytes.
 */
export async function buildInitramfs(opts: InitramfsOptions): Promise<Initramfs> {
  const busybox = opts.busybox ?? '/bin/busybox';
  const initSource = opts.initSource ?? guestInitSourcePath();
  const cc = opts.cc ?? 'gcc';
  if (!existsSync(initSource)) fail('guest init source', new Error(`${initSource} does not exist`));
  if (!existsSync(busybox)) fail('busybox', new Error(`${busybox} not found (apt-get install busybox-static)`));

  // Fast path: a stamp of the inputs' paths, sizes, mtimes and inodes (init source, busybox,
  // the kernel's modules.* index files) maps to the content-hashed initramfs built from them
  // and its module list, so a warm start reads a few inodes instead of parsing modules.alias
  // and hashing ~6 MB.
  const indexFiles = ['modules.dep', 'modules.softdep', 'modules.alias', 'modules.builtin'].map((f) => join(opts.kernel.modulesDir, f));
  const stampSrc = [`layout ${LAYOUT_VERSION}`, `kernel ${opts.kernel.version}`, `wanted ${GUEST_MODULES.join(',')}`];
  const sources = guestInitSources(initSource).all;
  for (const f of [...sources, busybox, ...indexFiles]) {
    const st = await stat(f).catch(() => undefined);
    stampSrc.push(st ? `${f} ${st.size} ${st.mtimeMs} ${st.ino}` : `${f} -`);
  }
  const stampFile = join(opts.cacheDir, `stamp-${createHash('sha256').update(stampSrc.join('\n')).digest('hex').slice(0, 24)}.json`);
  try {
    const known = JSON.parse(await readFile(stampFile, 'utf8')) as { hash: string; modules: ModuleLoad[] };
    const path = join(opts.cacheDir, `initramfs-${known.hash.slice(0, 24)}.cpio`);
    if (/^[0-9a-f]{64}$/.test(known.hash) && Array.isArray(known.modules) && existsSync(path)) {
      return { path, hash: known.hash, modules: known.modules, built: false };
    }
  } catch {
    // no (valid) stamp yet
  }

  const modules = resolveModuleOrder(opts.kernel.modulesDir);
  if (!(await isStaticElf(busybox))) fail('busybox', new Error(`${busybox} is not statically linked (install busybox-static)`));

  const h = createHash('sha256');
  h.update(`layout ${LAYOUT_VERSION}\nkernel ${opts.kernel.version}\n`);
  const srcHash = createHash('sha256');
  for (const f of sources) {
    srcHash.update(`${f.slice(f.lastIndexOf('/') + 1)}\n`);
    srcHash.update(await readFile(f));
  }
  const buildId = srcHash.digest('hex').slice(0, 12);
  h.update(buildId);
  h.update(await readFile(busybox));
  for (const m of modules) {
    h.update(`${m.optional ? '?' : ''}${m.path}\n`);
    h.update(await readFile(join(opts.kernel.modulesDir, m.path)));
  }
  const hash = h.digest('hex');
  const out = join(opts.cacheDir, `initramfs-${hash.slice(0, 24)}.cpio`);
  const writeStamp = async (): Promise<void> => {
    await mkdir(opts.cacheDir, { recursive: true });
    await writeFile(`${stampFile}.${process.pid}.tmp`, JSON.stringify({ hash, modules }));
    await rename(`${stampFile}.${process.pid}.tmp`, stampFile);
  };
  if (existsSync(out)) {
    await writeStamp();
    return { path: out, hash, modules, built: false };
  }

  await mkdir(opts.cacheDir, { recursive: true });
  const stage = await mkdtemp(join(opts.cacheDir, '.initramfs-'));
  try {
    for (const d of ['bin', 'etc/monocore', 'lib/modules', 'proc', 'sys', 'dev', 'lower', 'upper', 'newroot']) {
      await mkdir(join(stage, d), { recursive: true });
    }
    try {
      await run(cc, guestInitCompileArgs(initSource, join(stage, 'init'), buildId));
    } catch (err) {
      fail(`compiling ${initSource} with ${cc} -static (needs gcc and libc6-dev)`, err);
    }
    await copyFile(busybox, join(stage, 'bin/busybox'));
    const order: string[] = [];
    for (const m of modules) {
      const src = join(opts.kernel.modulesDir, m.path);
      const dst = join(stage, 'lib/modules', `${m.name}.ko`);
      // busybox-free init loads with finit_module(): store modules uncompressed.
      try {
        let data: Buffer;
        if (src.endsWith('.ko')) data = await readFile(src);
        else if (src.endsWith('.xz')) data = (await run('xz', ['-dc', src], { encoding: 'buffer', maxBuffer: 1 << 28 })).stdout;
        else if (src.endsWith('.zst')) data = (await run('zstd', ['-dc', src], { encoding: 'buffer', maxBuffer: 1 << 28 })).stdout;
        else if (src.endsWith('.gz')) data = (await run('gzip', ['-dc', src], { encoding: 'buffer', maxBuffer: 1 << 28 })).stdout;
        else fail('module', new Error(`unknown module format ${src}`));
        await writeFile(dst, stripModuleSignature(data));
      } catch (err) {
        if (err instanceof MonocoreError) throw err;
        fail(`copying module ${src}`, err);
      }
      order.push(`${m.optional ? '?' : ''}/lib/modules/${m.name}.ko`);
    }
    await writeFile(join(stage, 'etc/monocore/modules'), order.join('\n') + '\n');
    const tmpOut = `${out}.${process.pid}.tmp`;
    try {
      await run('sh', ['-c', `cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > "$2"`, 'sh', stage, tmpOut]);
    } catch (err) {
      fail('cpio (apt-get install cpio)', err);
    }
    // QEMU, running as a uid of its own, reopens it through /proc/self/fd (attachBootFiles).
    await chmod(tmpOut, 0o644);
    await rename(tmpOut, out);
    await writeStamp();
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
  return { path: out, hash, modules, built: true };
}
