import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import type { BackendAvailability, HypervisorBackend } from './hypervisor-backend.js';
import { QemuBackend } from './qemu-backend.js';

export type BackendName = 'qemu' | 'libkrun';

export interface SelectBackendOptions {
  home?: MonocoreHome;
  /** 'auto' (default, or MONOCORE_BACKEND): libkrun when available (its boot probe passed), else qemu. */
  prefer?: BackendName | 'auto';
  /** Guest kernel dir for the qemu backend. */
  kernelDir?: string;
  env?: NodeJS.ProcessEnv;
}

export interface BackendReport {
  name: BackendName;
  availability: BackendAvailability;
}

export interface SelectedBackend {
  backend: HypervisorBackend;
  availability: BackendAvailability & { available: true };
  /** Every backend probed, in order, with its verdict (for doctor and error messages). */
  probed: BackendReport[];
  /** Why this backend, for people: `qemu (tcg): libkrun passed over: …; qemu: …`. */
  reason: string;
}

/** A reason's first 160 characters: the full one is in `probed` and in doctor's per-backend line. */
function brief(reason: string): string {
  return reason.length <= 160 ? reason : `${reason.slice(0, 159)}…`;
}

/**
 * The selection rule alone (selectBackend and `monocore doctor` share it): the
 * preferred backend if usable, else in `auto` the first usable one in probe order
 * (libkrun, whose availability includes a real boot probe, then qemu). Returns
 * undefined when none is usable.
 */
export function chooseBackend(reports: readonly BackendReport[], prefer: BackendName | 'auto'): { name: BackendName; reason: string } | undefined {
  const candidates = prefer === 'auto' ? reports : reports.filter((r) => r.name === prefer);
  const chosen = candidates.find((r) => r.availability.available);
  if (!chosen || !chosen.availability.available) return undefined;
  const passedOver = candidates
    .slice(0, candidates.indexOf(chosen))
    .map((r) => `${r.name} passed over: ${r.availability.available ? 'usable' : brief(r.availability.reason)}`);
  const why = prefer === 'auto' ? 'auto' : `${prefer} requested (MONOCORE_BACKEND)`;
  const detail = chosen.availability.detail ? `: ${chosen.availability.detail}` : '';
  return { name: chosen.name, reason: `${chosen.name} (${chosen.availability.accel}), ${why}${passedOver.length ? `; ${passedOver.join('; ')}` : ''}; ${chosen.name}${detail}` };
}

/**
 * Every backend's availability on this host (libkrun first: it is the faster path where KVM
 * works). libkrun counts as available only after a real boot probe succeeded here.
 */
export async function probeBackends(opts: SelectBackendOptions = {}): Promise<Array<BackendReport & { backend: HypervisorBackend }>> {
  const out: Array<BackendReport & { backend: HypervisorBackend }> = [];
  // Imported lazily: the libkrun binding loads a native library on first use.
  const { LibkrunBackend } = await import('./libkrun-backend.js');
  const libkrun = new LibkrunBackend({ ...(opts.home ? { home: opts.home } : {}), ...(opts.env ? { env: opts.env } : {}) });
  out.push({ name: 'libkrun', backend: libkrun, availability: await libkrun.available() });
  const qemu = new QemuBackend({ ...(opts.home ? { home: opts.home } : {}), ...(opts.kernelDir ? { kernelDir: opts.kernelDir } : {}) });
  out.push({ name: 'qemu', backend: qemu, availability: await qemu.available() });
  return out;
}

/**
 * Picks the hypervisor backend: the preferred one if it is usable (an explicit
 * preference that is unusable is an error, not a silent fallback), otherwise
 * libkrun when available (its boot probe passed), else qemu. Throws MC_VM_BACKEND_UNAVAILABLE with
 * every backend's reason when none can run.
 */
export async function selectBackend(opts: SelectBackendOptions = {}): Promise<SelectedBackend> {
  const env = opts.env ?? process.env;
  const prefer = opts.prefer ?? ((env.MONOCORE_BACKEND as BackendName | 'auto' | undefined) || 'auto');
  if (prefer !== 'auto' && prefer !== 'qemu' && prefer !== 'libkrun') {
    throw new MonocoreError('MC_VM_BACKEND_UNAVAILABLE', `unknown backend ${JSON.stringify(prefer)} (MONOCORE_BACKEND): use qemu, libkrun or auto`, { prefer });
  }
  const reports = await probeBackends(opts);
  const probed = reports.map(({ name, availability }) => ({ name, availability }));
  const choice = chooseBackend(probed, prefer);
  const chosen = choice && reports.find((r) => r.name === choice.name);
  if (choice && chosen?.availability.available) return { backend: chosen.backend, availability: chosen.availability, probed, reason: choice.reason };
  const candidates = prefer === 'auto' ? reports : reports.filter((r) => r.name === prefer);
  const why = candidates.map((r) => `${r.name}: ${r.availability.available ? 'ok' : r.availability.reason}`).join('; ');
  throw new MonocoreError('MC_VM_BACKEND_UNAVAILABLE', `no usable hypervisor backend${prefer === 'auto' ? '' : ` (${prefer} requested)`}: ${why}`, { probed });
}
