import { MonocoreError } from '../errors/index.js';

/**
 * Every timing of host liveness and fencing, derived from one setting: the
 * lease time L (`MONOCORE_LEASE_MS`, default 8 s). docs/ORCHESTRATION.md
 * "Fencing" explains the numbers for operators.
 *
 *   renewEveryMs = L/4   a worker renews its leases and its host heartbeat
 *   fenceAfterMs = 3L/4  a worker that has not renewed a lease successfully
 *                        for this long (measured from when it SENT the last
 *                        renewal that succeeded, on its own monotonic clock)
 *                        kills that VM
 *   marginMs     = L/4   lease time − fence time: covers the kill itself, the
 *                        fence check's period, event-loop delay and any
 *                        difference between the worker's and Redis's clock rates
 *   leaseMs      = L     the lease key's TTL in Redis, counted from when Redis
 *                        processed the renewal — which is never before the
 *                        worker sent it
 *
 * The invariant: a replacement can take the lease only after it expired in
 * Redis, i.e. at least leaseMs = fenceAfterMs + marginMs after the last
 * renewal was sent, so failover time ≥ fence time + margin and the old copy is
 * dead before a new one may boot. A partition or Redis outage shorter than
 * fenceAfterMs − renewEveryMs (L/2) kills nothing.
 */
export interface LeaseTiming {
  leaseMs: number;
  renewEveryMs: number;
  fenceAfterMs: number;
  marginMs: number;
  /** How often the fence deadline is checked locally (independent of Redis). */
  fenceCheckMs: number;
  /** A renewal that has not answered after this long counts as failed (it may still land later). */
  renewTimeoutMs: number;
  /** TTL of the host's heartbeat key. */
  hostTtlMs: number;
  /** A reaper declares a host dead once its heartbeat key has been missing this long. */
  reapGraceMs: number;
}

export const DEFAULT_LEASE_MS = 8000;
/** Below this the margin (L/4) would not cover a kill plus event-loop delay on a busy host. */
export const MIN_LEASE_MS = 2000;

export function leaseTiming(leaseMs: number = DEFAULT_LEASE_MS): LeaseTiming {
  if (!Number.isInteger(leaseMs) || leaseMs < MIN_LEASE_MS) {
    throw new MonocoreError('MC_USAGE', `lease time must be an integer of at least ${MIN_LEASE_MS} ms, got ${leaseMs}`, {
      field: 'leaseMs',
      value: leaseMs,
    });
  }
  const quarter = Math.floor(leaseMs / 4);
  return {
    leaseMs,
    renewEveryMs: quarter,
    fenceAfterMs: leaseMs - quarter,
    marginMs: quarter,
    fenceCheckMs: Math.min(100, Math.floor(quarter / 4)),
    renewTimeoutMs: quarter,
    hostTtlMs: leaseMs,
    reapGraceMs: 2 * quarter,
  };
}
