import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { copySparse, writableDiskPath } from '../qemu-devices.js';
import type { QemuVm } from '../qemu-vm.js';
import { saveVmState, type VmStateDigest } from './vm-state-file.js';

/**
 * The one way a running VM is saved (template capture, pause, fork): stop its vCPUs, write its
 * state to `dest`, copy its writable disk to each of `diskCopies` (QEMU flushed the disk when the
 * migration completed, and the guest is still stopped, so state and disks are of one instant),
 * then let it run again — always (`resume: 'always'`: capture, fork), or only when the save
 * failed (`'on-failure'`: pause, whose caller ends the VM once the state is safe).
 */
export async function saveStopped(
  vm: QemuVm,
  o: { dest: string; diskCopies?: readonly string[]; resume: 'always' | 'on-failure' },
): Promise<{ state: VmStateDigest; stoppedMs: number }> {
  const qmp = await vm.qmp();
  const t0 = performance.now();
  await qmp.execute('stop');
  let ok = false;
  try {
    const state = await saveVmState(qmp, { runtimeDir: vm.runtimeDir, ...(vm.uid !== undefined ? { uid: vm.uid } : {}), dest: o.dest });
    for (const copy of o.diskCopies ?? []) {
      await mkdir(dirname(copy), { recursive: true });
      await copySparse(writableDiskPath(vm.spec.stateDir), copy);
    }
    ok = true;
    return { state, stoppedMs: Math.round(performance.now() - t0) };
  } finally {
    if (!ok || o.resume === 'always') await qmp.execute('cont').catch(() => undefined);
  }
}
