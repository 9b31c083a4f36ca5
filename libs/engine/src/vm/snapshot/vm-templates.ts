import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { VERSION } from '../../version.js';
import type { GuestIdentity } from '../guest-agent.js';
import type { GuestSpec } from '../guest-protocol.js';
import { isGroupMac } from '../group-switch.js';
import type { QemuVm } from '../qemu-vm.js';
import type { QmpClient } from './qmp-client.js';
import type { VmSpec } from '../vm-spec.js';
import { TEMPLATE_FORMAT, type Template, type TemplateShape, type TemplateStore } from './template-store.js';
import { saveStopped } from './save-stopped.js';
import { checkVmStateHash, type VmStateDigest } from './vm-state-file.js';

/**
 * How QemuBackend starts a VM from a template, or makes one (docs/SNAPSHOTS.md):
 *
 *   eligible? ─no──▶ cold boot, its own identity in the boot spec
 *      │yes
 *   template of this shape? ─yes──▶ restore: QEMU loads the state (-incoming, paused) while we
 *      │no                          hash the file; cont; REFRESH gives the VM its identity
 *   claim the build ─taken──▶ cold boot (someone else is building it)
 *      │got it
 *   cold boot with a neutral identity ─agent answers──▶ stop, save state + disk, cont ─▶ REFRESH
 */

/**
 * Why a VM cannot start from a template, or undefined when it can. Sandboxes, services and
 * `monocore run` commands alike: a template is always a sandbox (no command); a command VM gets
 * its command after REFRESH (qemu-vm.ts mainCommand). `diskExists`: the VM's state dir already
 * holds a writable disk (a service restarting keeps its files; the template's memory has the
 * template's disk mounted, so it must boot on its own).
 */
export function templateIneligibility(spec: VmSpec, imageId: string | undefined, diskExists = false): string | undefined {
  if (spec.volumes.length > 0) return 'it has host volumes (QEMU cannot save a VM with a 9p share)';
  if (spec.ports.length > 0) return 'it forwards host ports';
  if (!imageId) return 'its root is not an image of this host\'s store';
  if (spec.coldBoot) return 'a cold boot was asked for';
  if (diskExists) return 'its writable disk from an earlier run is kept';
  return undefined;
}

/** The identity a template is booted with: nothing of the first caller's (env, hostname, workdir, user) is saved in it. */
export function neutralGuestSpec(guest: GuestSpec): GuestSpec {
  const { user: _u, discardDisk: _d, ...rest } = guest;
  return { ...rest, argv: [], sandbox: true, agent: true, env: [], hostname: 'monocore', workdir: '/', hosts: [] };
}

/**
 * What a VM started from a template is told through REFRESH: everything `neutralGuestSpec` left
 * out. `savedMacs`: the NIC MACs the template was saved with (a restore), when this VM's differ
 * (another member of a group) its NICs are found by the saved MAC and given their own.
 */
export function templateIdentity(guest: GuestSpec, savedMacs?: readonly string[]): GuestIdentity {
  const id: GuestIdentity = { hostname: guest.hostname, env: guest.env, workdir: guest.workdir, user: guest.user ?? '' };
  if (guest.nics.length > 0 || guest.hosts.length > 0) {
    id.network = {
      interfaces: guest.nics.map((n, i) => {
        const saved = savedMacs?.[i] ?? n.mac;
        return { mac: saved, ...(saved !== n.mac ? { newMac: n.mac } : {}), cidr: n.cidr, ...(n.gateway ? { gateway: n.gateway } : {}) };
      }),
      hosts: guest.hosts,
      ...(guest.dns ? { dns: guest.dns } : {}),
    };
  }
  return id;
}

const sha = (v: unknown): string => createHash('sha256').update(typeof v === 'string' ? v : JSON.stringify(v)).digest('hex');

function fileStamp(path: string): string {
  const st = statSync(path);
  return `${path}:${st.size}:${Math.round(st.mtimeMs)}`;
}

let hostCpuFlags: string | undefined;
/** The host CPU's feature flags (KVM/HVF templates use them); "" under TCG. */
function hostCpu(accel: string): string {
  if (accel === 'tcg') return '';
  hostCpuFlags ??= sha(/^flags\s*:.*$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[0] ?? '');
  return hostCpuFlags;
}

export function templateShape(o: {
  qemuVersion: string;
  kernelPath: string;
  initramfsHash: string;
  imageId: string;
  imageBlockPath: string;
  /** sha256 of qemu-args.ts machineShape(). */
  machine: string;
  accel: string;
  guest: GuestSpec;
  diskMib: number;
  ramMib: number;
}): TemplateShape {
  // The guest spec as the template booted with it, less what REFRESH changes (NIC addresses).
  const neutral = neutralGuestSpec(o.guest);
  const { nics, dns: _d, ...guestRest } = neutral;
  // A group member's MAC follows its address: every member of one shape shares the template.
  const nicKey = (mac: string): string => (isGroupMac(mac) ? 'group member' : mac);
  return {
    format: TEMPLATE_FORMAT,
    monocore: VERSION,
    qemu: o.qemuVersion,
    kernel: fileStamp(o.kernelPath),
    initramfs: o.initramfsHash,
    imageId: o.imageId,
    imageBlock: fileStamp(o.imageBlockPath),
    machine: o.machine,
    hostCpu: hostCpu(o.accel),
    guest: sha({ ...guestRest, nics: nics.map((n) => nicKey(n.mac)), capabilities: (guestRest.capabilities ?? []).map((c) => [c.path, c.value.toString('hex')]) }),
    diskMib: o.diskMib,
    ramMib: o.ramMib,
  };
}

/**
 * Restores a template into a QEMU started with `-incoming fd:N -S`: waits for QEMU to load
 * the state while the file is hashed, and only then lets the guest run. A file that does not
 * check out never runs (the caller kills QEMU and boots cold).
 */
export async function finishRestore(vm: QemuVm, source: { statePath: string; state: VmStateDigest }): Promise<void> {
  const qmp = await loadRestoredState(() => vm.qmp(), source, (mark, ms) => (vm.timings[mark] = ms - vm.t0));
  await qmp.execute('cont');
  vm.markRestored();
}

/**
 * The load half of a restore (a spare stops here: qemu-backend.ts makeSpare): QEMU has loaded
 * the state and the file's hash checked out; the guest does not run yet. `mark` is told when
 * each step ended (ms since the epoch).
 */
export async function loadRestoredState(
  openQmp: () => Promise<QmpClient>,
  source: { statePath: string; state: VmStateDigest },
  mark: (step: 'restoreQmpMs' | 'restoreLoadedMs' | 'restoreHashedMs', at: number) => void = () => undefined,
): Promise<QmpClient> {
  const hashed = checkVmStateHash(source.statePath, source.state).then(() => mark('restoreHashedMs', Date.now()));
  hashed.catch(() => undefined);
  let qmp: QmpClient;
  try {
    qmp = await openQmp();
    mark('restoreQmpMs', Date.now());
    await qmp.migrationDone(5);
    mark('restoreLoadedMs', Date.now());
  } catch (err) {
    // A file that does not check out is the better reason: QEMU may have choked on it, at any
    // point of the load — even before its monitor answered (it exits on a bad stream header).
    await hashed;
    throw err;
  }
  await hashed;
  return qmp;
}

/**
 * Saves the template of a VM that booted with the neutral identity and whose agent just
 * answered: pause, save the state and copy the writable disk as they are at that instant,
 * run again. A failure leaves no template (logged by the caller) and the VM running.
 */
export async function captureTemplate(vm: QemuVm, o: { store: TemplateStore; shape: TemplateShape; macs: string[] }): Promise<Template> {
  const staged = await o.store.stage(o.shape);
  try {
    const { state, stoppedMs } = await saveStopped(vm, { dest: join(staged, 'state.bin'), diskCopies: [join(staged, 'upper.ext4')], resume: 'always' });
    return await o.store.commit(o.shape, staged, { state, createdAt: new Date().toISOString(), saveMs: stoppedMs, macs: o.macs });
  } catch (err) {
    await rm(staged, { recursive: true, force: true });
    throw err;
  }
}
