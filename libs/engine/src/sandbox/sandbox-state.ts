import { ENDED_SANDBOX_STATUSES, SANDBOX_STATUSES, type SandboxStatus } from '@monocore/api-schemas';
import { MonocoreError } from '../errors/index.js';

export { SANDBOX_STATUSES, ENDED_SANDBOX_STATUSES };
export type { SandboxStatus };

/**
 * The lifecycle of one sandbox, as an explicit state machine (like
 * state/service-state.ts for services):
 *
 *   creating ─▶ running ⇄ paused
 *                  └──────────┴──▶ expired | deleted | lost
 *      └──────────────────▶ failed | expired | deleted | lost
 *
 * Why each edge exists:
 * - creating → running: the VM booted and its agent answered the handshake.
 * - creating → failed: the pull failed (the registry's reason and code) or the
 *   VM could not boot after its attempts.
 * - → expired: timeout_s (counted from creation) or idle_timeout_s passed.
 * - → deleted: DELETE /sandboxes/:id.
 * - running → paused: POST …/pause, or idle_timeout_s with on_idle "pause": the VM was
 *   saved next to its disk on its host and its QEMU ended; its capacity is released.
 * - paused → running: POST …/resume restored it on the same host.
 * - → lost: its VM died or its worker host died (or was shut down). A sandbox
 *   is never recreated elsewhere: its state (disk, processes) is gone.
 * The ended statuses are final; the record stays readable for the retention
 * period, then expires.
 */
const TABLE: Record<SandboxStatus, readonly SandboxStatus[]> = {
  creating: ['running', 'failed', 'expired', 'deleted', 'lost'],
  running: ['paused', 'expired', 'deleted', 'lost'],
  paused: ['running', 'expired', 'deleted', 'lost'],
  expired: [],
  deleted: [],
  lost: [],
  failed: [],
};

export function isEndedSandboxStatus(s: SandboxStatus): boolean {
  return (ENDED_SANDBOX_STATUSES as readonly SandboxStatus[]).includes(s);
}

export function canSandboxTransition(from: SandboxStatus, to: SandboxStatus): boolean {
  return TABLE[from].includes(to);
}

/** The statuses from which `to` may be entered (what the atomic transition script checks). */
export function sandboxSources(to: SandboxStatus): SandboxStatus[] {
  return SANDBOX_STATUSES.filter((from) => TABLE[from].includes(to));
}

/** Throws MC_STATE_INVALID_TRANSITION naming both states when the table forbids it. */
export function assertSandboxTransition(id: string, from: SandboxStatus, to: SandboxStatus): void {
  if (!canSandboxTransition(from, to)) {
    const allowed = TABLE[from].length > 0 ? TABLE[from].join(', ') : 'nothing: it has ended';
    throw new MonocoreError('MC_STATE_INVALID_TRANSITION', `sandbox ${id}: invalid transition ${from} → ${to} (allowed from ${from}: ${allowed})`, {
      sandbox: id,
      from,
      to,
    });
  }
}
