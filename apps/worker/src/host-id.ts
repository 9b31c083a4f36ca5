import { hostname } from 'node:os';

/**
 * This worker's host id: MONOCORE_HOST_ID, else the machine's hostname (in a container, its
 * own hostname: each compose replica is then a host of its own), as a queue-safe name;
 * `local` if nothing of the hostname is left.
 */
export function workerHostId(env: NodeJS.ProcessEnv = process.env): string {
  return env.MONOCORE_HOST_ID || hostname().replace(/[^A-Za-z0-9_-]/g, '-') || 'local';
}
