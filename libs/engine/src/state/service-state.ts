import { MonocoreError } from '../errors/index.js';

/**
 * The lifecycle of one service, as an explicit state machine (like Firecracker's
 * VcpuRunState). Statuses that carry data: exited(code), failed(reason),
 * blocked(by) — the data lives beside the status in the service hash.
 *
 *   pending ─▶ pulling ─▶ starting ─▶ running ─▶ exited(code)
 *      │          │          │          │  └──▶ restarting ─▶ starting …
 *      └──────────┴──────────┴──────────┴──▶ blocked(by) | failed(reason) | lost
 *   any live state ─▶ stopping ─▶ stopped
 */
export const SERVICE_STATUSES = [
  'pending',
  'pulling',
  'starting',
  'running',
  'restarting',
  'exited',
  'failed',
  'blocked',
  'stopping',
  'stopped',
  'lost',
] as const;

export type ServiceStatusName = (typeof SERVICE_STATUSES)[number];

/** The status union with its data, as the engine passes it around. */
export type ServiceState =
  | { status: 'pending' }
  | { status: 'pulling' }
  | { status: 'starting' }
  | { status: 'running' }
  | { status: 'restarting' }
  | { status: 'exited'; exitCode: number | null }
  | { status: 'failed'; reason: string }
  | { status: 'blocked'; by: string }
  | { status: 'stopping' }
  | { status: 'stopped' }
  | { status: 'lost' };

/**
 * Allowed transitions: from → the statuses it may move to. A transition to the
 * same status is allowed only where listed (pending → pending when a new
 * deployment supersedes a pending one; lost → lost is not).
 *
 * Why each edge exists:
 * - pending: a new deployment asks for the service (from any settled state, and
 *   from stopping/stopped/lost when it is asked again).
 * - pulling/starting → pending: a failed attempt that BullMQ will retry.
 * - starting → starting: the boot of a worker that died mid-boot, attempted again
 *   (BullMQ is at-least-once; refusing it failed the service for good — chaos soak).
 * - running → starting: an `up` with a changed config restarts it in place.
 * - * → lost: the host's heartbeat expired; lost → pending when rescheduled.
 * - * → stopping: down/remove at any time; stopping → stopped/exited/failed.
 */
const TABLE: Record<ServiceStatusName, readonly ServiceStatusName[]> = {
  pending: ['pending', 'pulling', 'starting', 'running', 'blocked', 'failed', 'stopping', 'stopped', 'lost'],
  pulling: ['pending', 'starting', 'blocked', 'failed', 'stopping', 'stopped', 'lost'],
  starting: ['pending', 'starting', 'running', 'restarting', 'exited', 'failed', 'blocked', 'stopping', 'stopped', 'lost'],
  running: ['pending', 'starting', 'restarting', 'exited', 'failed', 'stopping', 'stopped', 'lost'],
  restarting: ['pending', 'starting', 'failed', 'stopping', 'stopped', 'lost'],
  exited: ['pending', 'restarting', 'starting', 'failed', 'stopping', 'stopped', 'lost'],
  failed: ['pending', 'stopping', 'stopped', 'lost'],
  blocked: ['pending', 'starting', 'failed', 'stopping', 'stopped', 'lost'],
  stopping: ['stopped', 'exited', 'failed', 'lost'],
  stopped: ['pending', 'starting', 'stopping', 'stopped', 'lost'],
  lost: ['pending', 'starting', 'failed', 'stopping', 'stopped'],
};

export function isServiceStatus(value: string): value is ServiceStatusName {
  return (SERVICE_STATUSES as readonly string[]).includes(value);
}

export function canTransition(from: ServiceStatusName, to: ServiceStatusName): boolean {
  return TABLE[from].includes(to);
}

/** The statuses from which `to` may be entered (what the atomic transition script checks). */
export function allowedSources(to: ServiceStatusName): ServiceStatusName[] {
  return SERVICE_STATUSES.filter((from) => TABLE[from].includes(to));
}

/** Throws MC_STATE_INVALID_TRANSITION naming both states when the table forbids it. */
export function assertTransition(service: string, from: ServiceStatusName, to: ServiceStatusName): void {
  if (!canTransition(from, to)) {
    throw new MonocoreError(
      'MC_STATE_INVALID_TRANSITION',
      `service "${service}": invalid transition ${from} → ${to} (allowed from ${from}: ${TABLE[from].join(', ')})`,
      { service, from, to },
    );
  }
}

/** Statuses in which a VM may exist for the service (it holds host capacity and a lease). */
export const LIVE_STATUSES: readonly ServiceStatusName[] = ['pulling', 'starting', 'running', 'restarting', 'stopping'];

/** Statuses an `up` with wait=true treats as settled. */
export const SETTLED_UP_STATUSES: readonly ServiceStatusName[] = ['running', 'exited', 'failed', 'blocked', 'stopped'];

/** A status with its data, rendered as the CLI shows it: exited(1), failed(boot timeout), blocked(db). */
export function formatState(state: ServiceState): string {
  switch (state.status) {
    case 'exited':
      return `exited(${state.exitCode ?? '?'})`;
    case 'failed':
      return `failed(${state.reason})`;
    case 'blocked':
      return `blocked(${state.by})`;
    default:
      return state.status;
  }
}
