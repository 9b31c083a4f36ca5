import { sparesFromEnv } from '@monocore/engine';

/**
 * The worker settings an operator sets in the environment, read in one place for both
 * processes that run a worker: `monocore-worker` and `monocore serve` (which ignored them
 * before, although docs/ORCHESTRATION.md tells operators of busy hosts to raise the lease).
 */
export interface WorkerEnvOptions {
  /** MONOCORE_WORKER_CPUS: vCPUs this host offers. */
  cpus?: number;
  /** MONOCORE_WORKER_RAM_MIB: guest RAM this host offers. */
  ramMib?: number;
  /** MONOCORE_LEASE_MS: the one liveness setting (heartbeat, fence and failover derive from it). */
  leaseMs?: number;
  /** MONOCORE_RESTART_BACKOFF_MS: first delay before restarting a failed service. */
  restartBackoffMs?: number;
  /** MONOCORE_WORKER_CONCURRENCY: start/stop jobs at once. */
  concurrency?: number;
  /** MONOCORE_SPARES: sandbox shapes that keep a restore made ahead of the request (0: off). */
  spares?: number;
}

const VARIABLES: ReadonlyArray<readonly [keyof WorkerEnvOptions, string]> = [
  ['cpus', 'MONOCORE_WORKER_CPUS'],
  ['ramMib', 'MONOCORE_WORKER_RAM_MIB'],
  ['leaseMs', 'MONOCORE_LEASE_MS'],
  ['restartBackoffMs', 'MONOCORE_RESTART_BACKOFF_MS'],
  ['concurrency', 'MONOCORE_WORKER_CONCURRENCY'],
];

/** Unset or empty variables are left out (the worker's defaults apply); anything but a positive number throws, naming the variable. */
export function workerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnvOptions {
  const options: WorkerEnvOptions = {};
  for (const [key, name] of VARIABLES) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${text} is not a positive number`);
    options[key] = value;
  }
  const spares = sparesFromEnv(env); // 0 is a setting here (off), not a missing number
  if (spares !== undefined) options.spares = spares;
  return options;
}
