#!/usr/bin/env node
// monocore-puller: the pull worker for this host. Env: MONOCORE_REDIS_URL (required),
// MONOCORE_HOST_ID (default: hostname), MONOCORE_HOME, MONOCORE_PULL_CONCURRENCY.
import { hostname } from 'node:os';
import { closeDefaultRegistryClient } from '@monocore/engine';
import { startPuller } from './index.js';

const redisUrl = process.env.MONOCORE_REDIS_URL;
if (!redisUrl) {
  console.error('monocore-puller: MONOCORE_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)');
  process.exit(2);
}
const hostId = process.env.MONOCORE_HOST_ID || hostname();
const concurrency = Number(process.env.MONOCORE_PULL_CONCURRENCY ?? '2');
if (!Number.isInteger(concurrency) || concurrency < 1) {
  console.error(`monocore-puller: MONOCORE_PULL_CONCURRENCY must be a positive integer, got "${process.env.MONOCORE_PULL_CONCURRENCY}"`);
  process.exit(2);
}
const puller = await startPuller({ redisUrl, hostId, concurrency, ...(process.env.MONOCORE_HOME ? { home: process.env.MONOCORE_HOME } : {}) });
console.error(`monocore-puller: host ${hostId}, queue ${puller.queueName}, concurrency ${concurrency}`);
puller.worker.on('failed', (job, err) => console.error(`pull ${job?.id ?? '?'} failed: ${err.message}`));
puller.worker.on('completed', (job) => console.error(`pull ${job.id ?? '?'} done: ${JSON.stringify(job.returnvalue)}`));

let closing = false;
const shutdown = (signal: string) => {
  if (closing) return;
  closing = true;
  console.error(`monocore-puller: ${signal}, finishing running pulls`);
  void puller
    .close()
    .then(() => closeDefaultRegistryClient())
    .then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`monocore-puller: close failed: ${String(err)}`);
        process.exit(1);
      },
    );
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
