import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MonocoreHome } from '@monocore/engine/home';
import type { RunningApi } from '@monocore/api';
import { defaultApiPort } from '../api/default-api-url.js';
import { readDaemonRecord, removeDaemonRecord } from '../daemon/daemon-record.js';
import { ExitCode } from '../exit-codes.js';
import { startEmbeddedRedis, type EmbeddedRedis } from '../serve/embedded-redis.js';
import { createServeLogger } from '../serve/serve-logger.js';

interface ServeOptions {
  port?: string;
  host: string;
  redisUrl?: string;
  hostId?: string;
  worker: boolean;
  puller: boolean;
  logLevel: string;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Run the API, puller and worker in one process (with an embedded Redis unless MONOCORE_REDIS_URL is set)')
    .option('-p, --port <port>', 'API port (0 picks a free one; default $MONOCORE_API_PORT or 3456)')
    .option('--host <address>', 'API address; anything but loopback requires MONOCORE_API_TOKEN', '127.0.0.1')
    .option('--redis-url <url>', 'use this Redis instead of an embedded one (default: $MONOCORE_REDIS_URL)')
    .option('--host-id <id>', 'this machine\'s host id for placement (default: $MONOCORE_HOST_ID or the hostname)')
    .option('--no-worker', 'do not run the VM worker in this process')
    .option('--no-puller', 'do not run the image puller in this process')
    .option('--log-level <level>', 'level of the human log on stderr (the JSON log file gets debug)', 'info')
    .addHelpText(
      'after',
      `
Environment:
  MONOCORE_HOME              state directory (default ~/.monocore); logs in $MONOCORE_HOME/log/serve.log
  MONOCORE_API_PORT          default --port (3456); also where the CLI looks for, and starts, the local daemon
  MONOCORE_REDIS_URL         an existing Redis; without it serve runs redis-server (AOF on) under $MONOCORE_HOME/redis
  MONOCORE_API_TOKEN         bearer token required on every route but /healthz
  MONOCORE_API_VOLUME_ROOTS  host paths REST bodies may mount (":" separated; default none). The local CLI
                             (same user, same machine) is trusted like a local config file: serve writes its
                             credential to $MONOCORE_HOME/run/api-local.token (0600).
  MONOCORE_API_PORTS         host ports REST bodies may publish (e.g. 8000-9000,3000; default 1024-65535)
  MONOCORE_API_REGISTRIES    loopback/private registries REST bodies may pull from (host[:port] or CIDR,
                             "," separated); link-local (cloud metadata) never; loopback by default while
                             serve listens on loopback
  MONOCORE_API_MAX_UPLOAD    largest file/tar upload to a sandbox or service, bytes (default 1 GiB)
  MONOCORE_WORKER_CPUS, MONOCORE_WORKER_RAM_MIB, MONOCORE_LEASE_MS, MONOCORE_RESTART_BACKOFF_MS,
  MONOCORE_WORKER_CONCURRENCY, MONOCORE_SPARES
                             the worker's settings, as for monocore-worker (README "Scaling out")`,
    )
    .action(async (opts: ServeOptions) => {
      const port = opts.port === undefined ? defaultApiPort() : Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        process.stderr.write(`error: --port must be a port number (0-65535), got "${opts.port}"\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }
      if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(opts.logLevel)) {
        process.stderr.write(`error: --log-level must be one of trace, debug, info, warn, error, fatal, silent\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }
      // Loaded here, not at the top: every other command would pay for Fastify, the worker and the puller.
      const [{ startApi, VolumePolicy, isLoopback }, { startPuller }, { startWorker, workerHostId, workerOptionsFromEnv }] = await Promise.all([
        import('@monocore/api'),
        import('@monocore/puller'),
        import('@monocore/worker'),
      ]);
      const home = new MonocoreHome();
      const { logger, file: logFile } = createServeLogger(home.logDir, opts.logLevel);
      // Host ids name queues (host-<id>, pull-<id>): letters, digits, _ and - only.
      const hostId = opts.hostId ?? workerHostId(process.env);
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(hostId)) {
        process.stderr.write(`error: --host-id must be 1-64 letters, digits, "_" or "-", got "${hostId}"\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }
      const token = process.env.MONOCORE_API_TOKEN || undefined;
      if (token !== undefined && token.length < 16) {
        process.stderr.write('error: MONOCORE_API_TOKEN must be at least 16 characters (e.g. openssl rand -hex 32)\n');
        process.exitCode = ExitCode.Usage;
        return;
      }
      if (!isLoopback(opts.host) && !token) {
        process.stderr.write(`error: refusing to listen on ${opts.host} (not loopback) without a token: set MONOCORE_API_TOKEN, or use --host 127.0.0.1\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }
      const volumeRoots = VolumePolicy.fromEnv(process.env.MONOCORE_API_VOLUME_ROOTS).roots;
      let workerSettings;
      try {
        workerSettings = workerOptionsFromEnv(process.env);
      } catch (err) {
        process.stderr.write(`error: ${(err as Error).message}\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }

      // Everything started so far, stopped in reverse order on the way out.
      const started: Array<{ name: string; close: () => Promise<void> }> = [];
      let shuttingDown: Promise<void> | undefined;
      const shutdown = (why: string): Promise<void> =>
        (shuttingDown ??= (async () => {
          logger.info({ why }, 'shutting down');
          for (const part of [...started].reverse()) {
            try {
              await part.close();
            } catch (err) {
              logger.error({ err, part: part.name }, 'failed to stop cleanly');
            }
          }
          logger.info('stopped');
        })());

      const stopped = new Promise<string>((resolve) => {
        const onSignal = (signal: NodeJS.Signals): void => {
          if (shuttingDown) {
            process.stderr.write(`${signal} again: exiting now\n`);
            process.exit(ExitCode.Failure);
          }
          resolve(signal);
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });

      try {
        // Run as the local daemon (apps/cli/src/daemon), its record goes with it once everything is stopped.
        started.push({
          name: 'daemon record',
          close: async () => {
            const record = await readDaemonRecord(home.daemonRecordPath);
            if (record && 'pid' in record && record.pid === process.pid) await removeDaemonRecord(home.daemonRecordPath);
          },
        });
        let redisUrl = opts.redisUrl ?? (process.env.MONOCORE_REDIS_URL || undefined);
        let redis: EmbeddedRedis | undefined;
        if (!redisUrl) {
          redis = await startEmbeddedRedis(home, logger);
          const r = redis;
          started.push({ name: 'redis', close: () => r.stop() });
          redisUrl = redis.url;
        }

        if (opts.puller) {
          const puller = await startPuller({ redisUrl, hostId, home });
          started.push({ name: 'puller', close: () => puller.close() });
          logger.info({ queue: puller.queueName }, 'puller ready');
        }
        if (opts.worker) {
          // The puller is started above (or not, with --no-puller): the worker must not start a second one.
          const worker = await startWorker({ redisUrl, hostId, home, logger: logger.child({ name: 'worker' }), puller: false, ...workerSettings });
          started.push({ name: 'worker', close: () => worker.close() });
          logger.info({ hostId }, 'worker ready');
        }

        // The local CLI's credential: readable only by this user (0600), replaced on every
        // start, written with the URL it is valid for once the API listens.
        const localToken = randomBytes(32).toString('hex');
        const api: RunningApi = await startApi({
          redisUrl,
          host: opts.host,
          port,
          ...(token ? { token } : {}),
          localToken,
          allowedVolumeRoots: volumeRoots,
          ...(process.env.MONOCORE_API_PORTS !== undefined ? { allowedPorts: process.env.MONOCORE_API_PORTS } : {}),
          ...(process.env.MONOCORE_API_REGISTRIES !== undefined ? { allowedRegistries: process.env.MONOCORE_API_REGISTRIES } : {}),
          ...(process.env.MONOCORE_API_MAX_UPLOAD !== undefined ? { maxUploadBytes: Number(process.env.MONOCORE_API_MAX_UPLOAD) } : {}),
          logger: logger.child({ name: 'api' }),
        });
        started.push({ name: 'api', close: () => api.close() });
        const tokenPath = home.apiLocalTokenPath;
        await mkdir(dirname(tokenPath), { recursive: true, mode: 0o700 });
        await writeFile(`${tokenPath}.tmp`, `${JSON.stringify({ url: api.url, token: localToken })}\n`, { mode: 0o600 });
        await rename(`${tokenPath}.tmp`, tokenPath);
        // Removed before the API closes (shutdown runs in reverse order).
        started.push({ name: 'local token', close: () => rm(tokenPath, { force: true }) });
        logger.info(
          { home: home.root, log: logFile, redis: redis ? `embedded 127.0.0.1:${redis.port}` : 'external', auth: token ? 'token' : 'none' },
          `monocore serve: API listening on ${api.url}`,
        );
      } catch (err) {
        await shutdown('start failed');
        throw err;
      }

      const signal = await stopped;
      await shutdown(signal);
      process.exitCode = ExitCode.Ok;
    });
}
