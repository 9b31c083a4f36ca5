#!/usr/bin/env node
// monocore-worker: the per-host process that boots and supervises VMs and pulls images.
// Env: MONOCORE_REDIS_URL (required), MONOCORE_HOST_ID (default: hostname), MONOCORE_HOME,
// MONOCORE_WORKER_CPUS / MONOCORE_WORKER_RAM_MIB (capacity offered), MONOCORE_WORKER_BACKEND
// (qemu, the only one; the guest kernel from MONOCORE_KERNEL_DIR), MONOCORE_LEASE_MS (the one liveness setting: heartbeat,
// fence and failover times derive from it; docs/ORCHESTRATION.md "Fencing"), MONOCORE_RESTART_BACKOFF_MS, MONOCORE_WORKER_CONCURRENCY (start/stop jobs at once).
import { pino } from 'pino';
import { MonocoreHome } from '@monocore/engine';
import { startWorker } from './index.js';
import { workerHostId } from './host-id.js';
import { workerOptionsFromEnv, type WorkerEnvOptions } from './worker-env.js';

const env = process.env;
const redisUrl = env.MONOCORE_REDIS_URL;
if (!redisUrl) {
  console.error('monocore-worker: MONOCORE_REDIS_URL is required (e.g. redis://127.0.0.1:6379)');
  process.exit(2);
}
const backendName = env.MONOCORE_WORKER_BACKEND ?? 'qemu';
if (backendName !== 'qemu') {
  console.error(`monocore-worker: MONOCORE_WORKER_BACKEND must be qemu, got "${backendName}"`);
  process.exit(2);
}
const hostId = workerHostId(env);
const logger = pino({ level: env.MONOCORE_LOG_LEVEL ?? 'info' }).child({ host: hostId });

let fromEnv: WorkerEnvOptions;
try {
  fromEnv = workerOptionsFromEnv(env);
} catch (err) {
  console.error(`monocore-worker: ${(err as Error).message}`);
  process.exit(2);
}

try {
  const worker = await startWorker({
    redisUrl,
    hostId,
    home: new MonocoreHome(MonocoreHome.defaultRoot(env)),
    backend: backendName,
    logger,
    ...fromEnv,
  });
  logger.info({ hostId }, 'worker ready');
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: no new jobs, stopping VMs, handing services back');
    const force = setTimeout(() => {
      logger.error('graceful stop took too long; exiting (VMs die with us: parent-death signal)');
      process.exit(1);
    }, 60_000);
    force.unref();
    worker.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'close failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
} catch (err) {
  logger.error({ err }, 'worker failed to start');
  console.error(`monocore-worker: ${(err as Error).message}`);
  process.exit(1);
}
