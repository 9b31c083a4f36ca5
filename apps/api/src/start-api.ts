import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { isIP } from 'node:net';
import { MonocoreError, Orchestrator, RelayClient, SandboxControl, StateStore, type JobTuning } from '@monocore/engine';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { buildApi, type BuildApiOptions } from './build-api.js';
import { QueueDiscovery } from './queue-discovery.js';

export interface StartApiOptions {
  redisUrl: string;
  /** Default 127.0.0.1. A non-loopback address requires a token. */
  host?: string;
  /** Default 3456; 0 picks a free port (see the returned url). */
  port?: number;
  token?: string;
  /** The local CLI credential (see buildApi); `monocore serve` generates one. */
  localToken?: string;
  allowedVolumeRoots?: string[];
  /** MONOCORE_API_PORTS (see buildApi). */
  allowedPorts?: string;
  /** MONOCORE_API_REGISTRIES (see buildApi). */
  allowedRegistries?: string;
  logger?: Logger;
  bodyLimit?: number;
  maxWaitMs?: number;
  /** Job tuning passed to the orchestrator (tests shorten backoffs). */
  jobs?: Partial<JobTuning>;
  /** Largest file or tar upload, bytes (MONOCORE_API_MAX_UPLOAD). Default 1 GiB. */
  maxUploadBytes?: number;
  /** How long ended sandboxes stay readable, ms (default 1 hour). */
  sandboxRetentionMs?: number;
}

export interface RunningApi {
  app: FastifyInstance;
  /** e.g. http://127.0.0.1:3456 */
  url: string;
  close(): Promise<void>;
}

export const DEFAULT_API_HOST = '127.0.0.1';
export const DEFAULT_API_PORT = 3456;

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const h = host.replace(/^\[|\]$/g, '');
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}

/**
 * Starts the API on its own: orchestrator over Redis, Bull Board with every
 * queue found under monocore's prefix, /healthz pinging Redis. Refuses to
 * listen beyond loopback without a token (README "REST API", docs/THREATS.md:
 * the API is reachable by whoever can reach its address).
 */
export async function startApi(options: StartApiOptions): Promise<RunningApi> {
  const host = options.host ?? DEFAULT_API_HOST;
  const port = options.port ?? DEFAULT_API_PORT;
  if (!isLoopback(host) && !options.token) {
    throw new MonocoreError(
      'MC_USAGE',
      `refusing to listen on ${host} (not loopback) without a token: set MONOCORE_API_TOKEN, or listen on 127.0.0.1`,
      { host },
    );
  }
  // Health and discovery fail fast while Redis is down (no offline queue).
  const probe = new Redis(options.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
  const queueConnection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  probe.on('error', () => undefined); // reported through /healthz
  queueConnection.on('error', () => undefined);
  await probe.connect().catch((err: unknown) => {
    probe.disconnect();
    queueConnection.disconnect();
    throw new MonocoreError('MC_API_REDIS_UNAVAILABLE', `cannot connect to Redis at ${redactUrl(options.redisUrl)}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const orchestrator = new Orchestrator({
    redisUrl: options.redisUrl,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.jobs ? { jobs: options.jobs } : {}),
  });
  // Sandboxes and exec/files: a connection of their own (calls are latency-sensitive) and this process's relay inbox.
  const sandboxConnection = new Redis(options.redisUrl, { maxRetriesPerRequest: 3 });
  sandboxConnection.on('error', () => undefined); // reconnects; calls fail while Redis is away
  const relayLogger = options.logger ?? pino({ level: 'silent' });
  const relay = await RelayClient.open({ redis: sandboxConnection, logger: relayLogger });
  const sandboxes = new SandboxControl({
    redis: sandboxConnection,
    relay,
    logger: relayLogger,
    ...(options.sandboxRetentionMs !== undefined ? { retentionMs: options.sandboxRetentionMs } : {}),
    ...(options.jobs?.pullAttempts !== undefined ? { pullAttempts: options.jobs.pullAttempts } : {}),
    ...(options.jobs?.pullBackoffMs !== undefined ? { pullBackoffMs: options.jobs.pullBackoffMs } : {}),
  });
  const closeSandboxes = async (): Promise<void> => {
    await sandboxes.close();
    await relay.close();
    await sandboxConnection.quit().catch(() => sandboxConnection.disconnect());
  };
  const discovery = new QueueDiscovery(probe, queueConnection);
  const buildOptions: BuildApiOptions = {
    orchestrator,
    sandboxes,
    ...(options.maxUploadBytes !== undefined ? { maxUploadBytes: options.maxUploadBytes } : {}),
    queues: await discovery.discover(),
    discoverQueues: () => discovery.discover(),
    loopbackOnly: isLoopback(host),
    lastEventId: () => new StateStore(probe).lastEventId(),
    healthCheck: async () => {
      await probe.ping();
    },
    ...(options.token ? { auth: { token: options.token } } : {}),
    ...(options.localToken ? { localToken: options.localToken } : {}),
    ...(options.allowedVolumeRoots ? { allowedVolumeRoots: options.allowedVolumeRoots } : {}),
    ...(options.allowedPorts !== undefined ? { allowedPorts: options.allowedPorts } : {}),
    ...(options.allowedRegistries !== undefined ? { allowedRegistries: options.allowedRegistries } : {}),
    ...(options.logger ? { logger: options.logger as FastifyBaseLogger } : {}),
    ...(options.bodyLimit !== undefined ? { bodyLimit: options.bodyLimit } : {}),
    ...(options.maxWaitMs !== undefined ? { maxWaitMs: options.maxWaitMs } : {}),
  };
  let app: FastifyInstance;
  try {
    app = await buildApi(buildOptions);
    await app.listen({ host, port });
  } catch (err) {
    await discovery.close();
    await closeSandboxes();
    await orchestrator.close();
    probe.disconnect();
    queueConnection.disconnect();
    throw err;
  }
  const address = app.server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await discovery.close();
        await closeSandboxes();
        await orchestrator.close();
        await probe.quit().catch(() => probe.disconnect());
        await queueConnection.quit().catch(() => queueConnection.disconnect());
      })()),
  };
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
