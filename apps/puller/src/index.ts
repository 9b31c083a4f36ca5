import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { MetricsRecorder, MonocoreHome, QUEUE_PREFIX, QueueNames, type PullJobResult, type RegistryClient } from '@monocore/engine';
import { createPullProcessor } from './pull-processor.js';

export { createPullProcessor } from './pull-processor.js';
export type { PullJobProgress, PullProcessorOptions } from './pull-processor.js';

export interface StartPullerOptions {
  /** An ioredis connection created with maxRetriesPerRequest: null (BullMQ workers need it). */
  connection?: Redis;
  /** Used when no connection is given. */
  redisUrl?: string;
  /** This host's id (default: the hostname); the worker consumes QueueNames.pull(hostId). */
  hostId?: string;
  home?: MonocoreHome | string;
  /** Jobs processed at once (default 2); layer downloads inside one pull are bounded separately. */
  concurrency?: number;
  client?: RegistryClient;
  /** Where pull and unpack durations go (default: Redis, labelled with hostId, for GET /metrics). */
  metrics?: MetricsRecorder;
}

export interface Puller {
  readonly worker: Worker;
  readonly queueName: string;
  /** Stops taking jobs, waits for running ones, closes connections it opened. */
  close(): Promise<void>;
}

/** Starts the pull worker for one host. */
export async function startPuller(options: StartPullerOptions): Promise<Puller> {
  const hostId = options.hostId ?? hostname();
  const home = options.home instanceof MonocoreHome ? options.home : new MonocoreHome(options.home);
  let owned: Redis | undefined;
  let connection = options.connection;
  if (!connection) {
    if (!options.redisUrl) throw new Error('startPuller: pass connection or redisUrl');
    owned = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    connection = owned;
  }
  const queueName = QueueNames.pull(hostId);
  const worker = new Worker<unknown, PullJobResult>(
    queueName,
    createPullProcessor({
      home,
      metrics: options.metrics ?? new MetricsRecorder(connection, { labels: { host: hostId } }),
      ...(options.client ? { client: options.client } : {}),
    }),
    { connection, prefix: QUEUE_PREFIX, concurrency: options.concurrency ?? 2, autorun: true },
  );
  await worker.waitUntilReady();
  return {
    worker,
    queueName,
    async close() {
      await worker.close();
      if (owned) await owned.quit().catch(() => undefined);
    },
  };
}
