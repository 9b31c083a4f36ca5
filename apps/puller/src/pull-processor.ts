import { performance } from 'node:perf_hooks';
import type { Job } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import {
  PullJobDataSchema,
  isMonocoreError,
  pullImage,
  type MetricsRecorder,
  type MonocoreHome,
  type PullJobResult,
  type PullProgress,
  type RegistryClient,
} from '@monocore/engine';

/** What a pull job reports through job.progress (bytes are compressed layer bytes). */
export interface PullJobProgress {
  phase: PullProgress['phase'];
  layers: Array<{ digest: string; done: number; total: number }>;
  done: number;
  total: number;
}

export interface PullProcessorOptions {
  home: MonocoreHome;
  client?: RegistryClient;
  /** Minimum interval between job.updateProgress calls (default 250 ms). */
  progressIntervalMs?: number;
  /** Where pull and unpack durations are recorded (GET /metrics). */
  metrics?: MetricsRecorder;
}

/**
 * Builds the BullMQ processor for one host's pull queue. Jobs for the same image
 * on this host coalesce: pullImage keeps one in-flight pull per (home, reference,
 * platform) and fans its progress out to every job waiting on it, and the content
 * store's cross-process lock makes a second puller process wait for the first.
 *
 * Failures: a MonocoreError whose code is not retryable (unauthorized, not found,
 * digest mismatch, unsupported media type, no matching platform...) becomes an
 * UnrecoverableError so BullMQ does not retry it; anything else is rethrown and
 * retried with the attempts/backoff the producer set.
 */
export function createPullProcessor(options: PullProcessorOptions): (job: Job) => Promise<PullJobResult> {
  const interval = options.progressIntervalMs ?? 250;
  return async (job: Job): Promise<PullJobResult> => {
    const parsed = PullJobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UnrecoverableError(`MC_USAGE: invalid pull job data: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}`);
    }
    const data = parsed.data;
    let last = 0;
    let lastPhase = '';
    // Updates go out one at a time, in order. While one is in flight, newer snapshots of the
    // same phase replace the queued one, but every phase change is kept.
    const queue: PullJobProgress[] = [];
    let updating: Promise<unknown> = Promise.resolve();
    const push = (p: PullJobProgress) => {
      if (queue.length > 0 && queue[queue.length - 1]!.phase === p.phase) queue[queue.length - 1] = p;
      else queue.push(p);
      updating = updating.then(async () => {
        const next = queue.shift();
        if (next) await job.updateProgress(next as unknown as object).catch(() => undefined);
      });
    };
    const started = performance.now();
    try {
      const pulled = await pullImage(data.image, {
        home: options.home,
        ...(data.platform ? { platform: data.platform } : {}),
        // A REST caller's pull goes through a client that checks every address it connects to.
        ...(options.client && !data.registryPolicy ? { client: options.client } : {}),
        ...(data.registryPolicy ? { policy: data.registryPolicy } : {}),
        onProgress: (p) => {
          const now = Date.now();
          // Throttle within a phase; the first snapshot of each phase always goes out.
          if (p.phase === lastPhase && p.phase !== 'done' && now - last < interval) return;
          last = now;
          lastPhase = p.phase;
          push({ phase: p.phase, layers: p.layers, done: p.done, total: p.total });
        },
      });
      await updating;
      void options.metrics?.observe('pull', (performance.now() - started) / 1000, { cache: pulled.cache ?? 'cold' });
      if (pulled.unpackSeconds !== undefined) void options.metrics?.observe('unpack', pulled.unpackSeconds);
      return { reference: pulled.reference, manifestDigest: pulled.manifestDigest, rootfs: pulled.rootfs };
    } catch (err) {
      await updating;
      if (isMonocoreError(err)) {
        const message = `${err.code}: ${err.message}`;
        if (!err.retryable) throw new UnrecoverableError(message);
        const e = new Error(message, { cause: err });
        e.name = err.code;
        throw e;
      }
      throw err;
    }
  };
}
