import { existsSync } from 'node:fs';
import { MonocoreError } from '../../errors/index.js';
import type { MonocoreHome } from '../../home/index.js';
import { imageBlockPath } from '../../rootfs/image-block.js';
import type { GuestKernel } from '../guest-kernel.js';
import type { GuestSpec } from '../guest-protocol.js';
import type { Initramfs } from '../initramfs-builder.js';
import type { CleanupStack } from '../cleanup-stack.js';
import { writableDiskPath } from '../qemu-devices.js';
import type { VmBootSource } from '../qemu-vm.js';
import type { VmSpec } from '../vm-spec.js';
import { pausedStatePath, type PausedVmMeta } from './paused-vm.js';
import type { Template, TemplateShape, TemplateStore } from './template-store.js';
import type { VmStateDigest } from './vm-state-file.js';
import { templateIneligibility, templateShape } from './vm-templates.js';

/** What QemuBackend's start(), resume() and fork() ask of one VM start. */
export type StartMode =
  | { kind: 'cold'; reason: string }
  | { kind: 'auto'; afterFailedRestore?: string }
  /** A spare (spare-vms.ts): its shape's template restored and left stopped; never a cold boot or a capture. */
  | { kind: 'spare' }
  | { kind: 'resume'; meta: PausedVmMeta }
  | { kind: 'fork'; parent: string; machine: string; statePath: string; state: VmStateDigest; pausedMs: number };

/** A saved VM state to restore: the file, what it must hash to, and the writable disk to start from (absent: the VM's own). */
export interface RestoreSource {
  statePath: string;
  state: VmStateDigest;
  upperPath?: string;
}

/** How one VM starts. */
export type StartPlan =
  | { kind: 'cold'; boot: VmBootSource }
  | { kind: 'restore'; source: RestoreSource; template?: Template; boot: VmBootSource }
  | { kind: 'capture'; shape: TemplateShape; macs: string[]; release: () => Promise<void>; boot: VmBootSource };

/** What planStart needs of the backend: its template store and what a template is keyed on. */
export interface StartPlanHost {
  home: MonocoreHome;
  templates: TemplateStore;
  bootFiles(): Promise<{ kernel: GuestKernel; initramfs: Initramfs }>;
  qemuVersion(): string;
  accel: string;
  diskMib(spec: VmSpec): number;
}

/**
 * Restore, capture or plain cold boot, and why (docs/SNAPSHOTS.md): a resume or a fork
 * restores its own state (same machine shape or refused); otherwise an eligible VM is restored
 * from its shape's template, or — when this start gets the shape's build lock — boots neutral
 * and saves it; anything else boots cold with the reason.
 */
export async function planStart(
  host: StartPlanHost,
  spec: VmSpec,
  mode: StartMode,
  o: { probe: boolean; imageId: string | undefined; guest: GuestSpec; machineHash: string; cleanup: CleanupStack },
): Promise<StartPlan> {
  if (mode.kind === 'cold') return { kind: 'cold', boot: { from: 'cold', reason: mode.reason } };
  if (mode.kind === 'fork') {
    if (mode.machine !== o.machineHash) {
      throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${spec.id}: a fork must have its parent's machine shape (image, RAM, vCPUs, disk, NICs)`, { id: spec.id, parent: mode.parent });
    }
    return {
      kind: 'restore',
      source: { statePath: mode.statePath, state: mode.state },
      boot: { from: 'fork', reason: `forked from ${mode.parent} (parent paused ${mode.pausedMs} ms)` },
    };
  }
  if (mode.kind === 'resume') {
    if (mode.meta.machine !== o.machineHash) {
      throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${spec.id}: paused on another machine shape (RAM, vCPUs, devices, kernel command line or monocore changed); it cannot be resumed`, { id: spec.id });
    }
    return {
      kind: 'restore',
      source: { statePath: pausedStatePath(spec.stateDir), state: mode.meta.state },
      boot: { from: 'paused', reason: `resumed (paused at ${mode.meta.pausedAt})` },
    };
  }
  const why = o.probe ? 'boot probe' : templateIneligibility(spec, o.imageId, existsSync(writableDiskPath(spec.stateDir)));
  if (why !== undefined && mode.kind === 'spare') throw new MonocoreError('MC_VM_START_FAILED', `${spec.id}: no spare: ${why}`, { id: spec.id });
  if (why !== undefined) return { kind: 'cold', boot: { from: 'cold', reason: why } };
  const { kernel, initramfs } = await host.bootFiles();
  const shape = templateShape({
    qemuVersion: host.qemuVersion(),
    kernelPath: kernel.vmlinux,
    initramfsHash: initramfs.hash,
    imageId: o.imageId!,
    imageBlockPath: imageBlockPath(host.home, o.imageId!),
    machine: o.machineHash,
    accel: host.accel,
    guest: o.guest,
    diskMib: host.diskMib(spec),
    ramMib: spec.ramMib,
  });
  const failed = mode.kind === 'auto' ? mode.afterFailedRestore : undefined;
  const found: { template?: Template; reason: string } = failed ? { reason: failed } : await host.templates.lookup(shape);
  if (mode.kind === 'spare' && !found.template) throw new MonocoreError('MC_VM_START_FAILED', `${spec.id}: no spare without a template: ${found.reason}`, { id: spec.id });
  if (found.template) {
    const t = found.template;
    return { kind: 'restore', template: t, source: { statePath: t.statePath, state: t.meta.state, upperPath: t.upperPath }, boot: { from: 'template', reason: `template ${t.key}` } };
  }
  const lock = await host.templates.claim(shape);
  if (!lock) return { kind: 'cold', boot: { from: 'cold', reason: `${found.reason}; another VM is building it now` } };
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await lock.release();
  };
  o.cleanup.push(release);
  return { kind: 'capture', shape, macs: o.guest.nics.map((n) => n.mac), release, boot: { from: 'cold', reason: `${found.reason}; this boot saves it` } };
}
