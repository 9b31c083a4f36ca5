import type { VmHandle } from '@monocore/engine';

/**
 * Where one supervised service's VM is in its life on this host — one field
 * instead of loose flags, so a late callback (a boot that completes after a
 * stop, an exit after a fence, a restart timer after a kill) can tell that it
 * is stale: it finds its entry in another phase, or `ended`.
 *
 *   booting ──▶ running ──▶ backoff ──▶ booting …
 *      │           │           │
 *      └───────────┴───────────┴──▶ ended   (stopped, exited for good, failed, killed, fenced)
 */
export type VmPhase =
  /** backend.start / `started` in flight; `handle` once the hypervisor process exists. */
  | { kind: 'booting'; handle?: VmHandle }
  | { kind: 'running'; handle: VmHandle; upSince: number }
  /** Waiting to restart after an unexpected exit (restart policy, exponential backoff). */
  | { kind: 'backoff'; timer: NodeJS.Timeout }
  /** Terminal: the entry has left the supervisor. */
  | { kind: 'ended' };

export type VmPhaseKind = VmPhase['kind'];

const NEXT: Record<VmPhaseKind, readonly VmPhaseKind[]> = {
  booting: ['booting', 'running', 'backoff', 'ended'], // booting → booting: the hypervisor process now exists
  running: ['backoff', 'ended'],
  backoff: ['booting', 'ended'],
  ended: [],
};

/** Moves `holder` to `to`, or throws naming both phases (a transition not in the table is a bug). */
export function transitionVm(service: string, holder: { phase: VmPhase }, to: VmPhase): void {
  const from = holder.phase.kind;
  if (!NEXT[from].includes(to.kind)) throw new Error(`service "${service}": invalid VM phase transition ${from} → ${to.kind}`);
  if (holder.phase.kind === 'backoff') clearTimeout(holder.phase.timer);
  holder.phase = to;
}

/** The live hypervisor handle in this phase, if any. */
export function handleOf(phase: VmPhase): VmHandle | undefined {
  return phase.kind === 'booting' || phase.kind === 'running' ? phase.handle : undefined;
}
