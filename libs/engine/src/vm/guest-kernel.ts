import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';

/** Where scripts/guest-kernel.sh puts the kernel when MONOCORE_KERNEL_DIR is unset. */
export const DEFAULT_KERNEL_DIR = '/var/lib/monocore/kernel';

/** A guest kernel as laid out by scripts/guest-kernel.sh. */
export interface GuestKernel {
  /** The directory holding vmlinux and lib/modules/<version>. */
  dir: string;
  /** Uncompressed ELF kernel (QEMU boots it through its PVH entry point). */
  vmlinux: string;
  /** Kernel release, e.g. "6.1.0-56-amd64". */
  version: string;
  /** lib/modules/<version> (with modules.dep). */
  modulesDir: string;
}

/**
 * Finds the guest kernel: an explicit directory (config), then
 * `MONOCORE_KERNEL_DIR`, then /var/lib/monocore/kernel. Throws
 * MC_VM_KERNEL_NOT_FOUND naming the set-up command when none is usable.
 */
export function findGuestKernel(explicitDir?: string, env: NodeJS.ProcessEnv = process.env): GuestKernel {
  const candidates: Array<{ dir: string; from: string }> = [];
  if (explicitDir) candidates.push({ dir: explicitDir, from: 'config' });
  if (env.MONOCORE_KERNEL_DIR) candidates.push({ dir: env.MONOCORE_KERNEL_DIR, from: 'MONOCORE_KERNEL_DIR' });
  candidates.push({ dir: DEFAULT_KERNEL_DIR, from: 'default' });
  const problems: string[] = [];
  for (const { dir, from } of candidates) {
    const vmlinux = join(dir, 'vmlinux');
    if (!existsSync(vmlinux)) {
      problems.push(`${dir} (${from}): no vmlinux`);
      // An explicitly named directory that is wrong is an error, not a reason to guess.
      if (from !== 'default') break;
      continue;
    }
    let version = '';
    try {
      version = readFileSync(join(dir, 'version'), 'utf8').trim();
    } catch {
      const versions = existsSync(join(dir, 'lib/modules')) ? readdirSync(join(dir, 'lib/modules')) : [];
      version = versions[0] ?? '';
    }
    const modulesDir = join(dir, 'lib/modules', version);
    if (!version || !existsSync(modulesDir)) {
      problems.push(`${dir} (${from}): no lib/modules/<version>`);
      if (from !== 'default') break;
      continue;
    }
    return { dir, vmlinux, version, modulesDir };
  }
  throw new MonocoreError(
    'MC_VM_KERNEL_NOT_FOUND',
    `no guest kernel found (${problems.join('; ')}); run: bash scripts/guest-kernel.sh ` +
      `(or MONOCORE_KERNEL_DIR=<dir> bash scripts/guest-kernel.sh and export MONOCORE_KERNEL_DIR)`,
    { tried: candidates.map((c) => c.dir) },
  );
}
