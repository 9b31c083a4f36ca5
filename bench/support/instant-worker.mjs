#!/usr/bin/env node
// NOT A SANDBOX — benchmark only. A worker process (as apps/worker/dist/main.js,
// configured by the same MONOCORE_* variables) whose backend is the benchmark's
// InstantBackend, injected through startWorker({ backend }).
import { pino } from 'pino';
import { startWorker } from '@monocore/worker';
import { InstantBackend } from './instant-backend.mjs';

const env = process.env;
const hostId = env.MONOCORE_HOST_ID ?? 'bench';
const logger = pino({ level: env.MONOCORE_LOG_LEVEL ?? 'error' }).child({ host: hostId });
const worker = await startWorker({
  redisUrl: env.MONOCORE_REDIS_URL,
  hostId,
  home: env.MONOCORE_HOME,
  backend: new InstantBackend(),
  logger,
  cpus: Number(env.MONOCORE_WORKER_CPUS ?? 1000),
  ramMib: Number(env.MONOCORE_WORKER_RAM_MIB ?? 1_000_000),
  concurrency: Number(env.MONOCORE_WORKER_CONCURRENCY ?? 4),
  leaseMs: Number(env.MONOCORE_LEASE_MS ?? 4000),
});
process.on('SIGTERM', () => {
  worker.close().then(() => process.exit(0), () => process.exit(1));
});
