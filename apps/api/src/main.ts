#!/usr/bin/env node
// monocore-api: the REST API on its own (for horizontal scaling; `monocore serve`
// runs it together with a worker and a puller).
//   MONOCORE_REDIS_URL         Redis to use (required)
//   MONOCORE_API_HOST          default 127.0.0.1; a non-loopback address needs a token
//   MONOCORE_API_PORT          default 3456
//   MONOCORE_API_TOKEN         bearer token required on every route but /healthz
//   MONOCORE_API_VOLUME_ROOTS  host paths REST bodies may mount (":" or "," separated; default none)
//   MONOCORE_API_PORTS         host ports REST bodies may publish (e.g. 8000-9000,3000; default 1024-65535)
//   MONOCORE_API_REGISTRIES    loopback/private registries REST bodies may pull from (host[:port] or CIDR, "," separated)
//   MONOCORE_API_MAX_UPLOAD    largest file/tar upload to a sandbox or service, bytes (default 1 GiB)
//   MONOCORE_LOG_LEVEL         pino level (default info), JSON to stdout
// Redis not answering at start is waited for (retried with backoff, a warning each time), as a
// restarted API must ride out a Redis restart; bad settings exit at once (2).
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { isMonocoreError } from '@monocore/engine';
import { startApi, DEFAULT_API_HOST, DEFAULT_API_PORT, type RunningApi, type StartApiOptions } from './start-api.js';
import { VolumePolicy } from './volume-policy.js';

const env = process.env;
const logger = pino({ name: 'monocore-api', level: env.MONOCORE_LOG_LEVEL ?? 'info' });

/**
 * startApi, again and again while Redis does not answer (0.5 s doubling to 5 s). An API killed
 * and started again while Redis was also down used to exit for good (found by the chaos soak);
 * a supervisor may restart it, but the API should not need one for that.
 */
async function startWhenRedisAnswers(options: StartApiOptions): Promise<RunningApi> {
  for (let delayMs = 500; ; delayMs = Math.min(delayMs * 2, 5000)) {
    try {
      return await startApi(options);
    } catch (err) {
      if (!isMonocoreError(err, 'MC_API_REDIS_UNAVAILABLE')) throw err;
      logger.warn({ err: err.message, retryInMs: delayMs }, 'Redis does not answer yet; waiting for it');
      await sleep(delayMs);
    }
  }
}

async function main(): Promise<void> {
  const redisUrl = env.MONOCORE_REDIS_URL;
  if (!redisUrl) {
    process.stderr.write('monocore-api: MONOCORE_REDIS_URL is required (e.g. redis://127.0.0.1:6379)\n');
    process.exit(2);
  }
  const port = env.MONOCORE_API_PORT ? Number(env.MONOCORE_API_PORT) : DEFAULT_API_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`monocore-api: MONOCORE_API_PORT must be a port number, got "${env.MONOCORE_API_PORT}"\n`);
    process.exit(2);
  }
  const maxUpload = env.MONOCORE_API_MAX_UPLOAD !== undefined ? Number(env.MONOCORE_API_MAX_UPLOAD) : undefined;
  if (maxUpload !== undefined && (!Number.isSafeInteger(maxUpload) || maxUpload < 1)) {
    process.stderr.write(`monocore-api: MONOCORE_API_MAX_UPLOAD must be a positive number of bytes, got "${env.MONOCORE_API_MAX_UPLOAD}"
`);
    process.exit(2);
  }
  const api = await startWhenRedisAnswers({
    ...(maxUpload !== undefined ? { maxUploadBytes: maxUpload } : {}),
    redisUrl,
    host: env.MONOCORE_API_HOST ?? DEFAULT_API_HOST,
    port,
    ...(env.MONOCORE_API_TOKEN ? { token: env.MONOCORE_API_TOKEN } : {}),
    allowedVolumeRoots: VolumePolicy.fromEnv(env.MONOCORE_API_VOLUME_ROOTS).roots,
    ...(env.MONOCORE_API_PORTS !== undefined ? { allowedPorts: env.MONOCORE_API_PORTS } : {}),
    ...(env.MONOCORE_API_REGISTRIES !== undefined ? { allowedRegistries: env.MONOCORE_API_REGISTRIES } : {}),
    logger,
  });
  logger.info({ url: api.url }, 'monocore API listening');
  const stop = (signal: string): void => {
    logger.info({ signal }, 'shutting down');
    api.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  if (isMonocoreError(err)) {
    process.stderr.write(`monocore-api: ${err.message}\n`);
    process.exit(err.code === 'MC_USAGE' ? 2 : 1);
  }
  logger.fatal({ err }, 'monocore-api failed to start');
  process.exit(70);
});
