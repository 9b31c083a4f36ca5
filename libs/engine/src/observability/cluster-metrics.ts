import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { findQueueNames, QUEUE_PREFIX } from '../orchestration/queues.js';
import { HostRegistry, type HostCapacity } from '../state/host-registry.js';
import { Keys } from '../state/keys.js';
import { SERVICE_STATUSES, type ServiceStatusName } from '../state/service-state.js';
import { StateStore } from '../state/state-store.js';
import { COUNTERS, DURATIONS, durationBuckets, type CounterKind, type DurationKind } from './recorded-metrics.js';

/** The job states counted per queue (BullMQ's getJobCounts types). */
export const QUEUE_JOB_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'] as const;
export type QueueJobState = (typeof QUEUE_JOB_STATES)[number];

export interface QueueDepth {
  queue: string;
  counts: Record<QueueJobState, number>;
}

export interface HistogramSeries {
  kind: DurationKind;
  labels: Record<string, string>;
  /** Cumulative counts per upper bound, ascending; the last bound is +Infinity (= count). */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

export interface CounterSeries {
  kind: CounterKind;
  labels: Record<string, string>;
  value: number;
}

/** Everything GET /metrics exposes about the cluster, read from Redis in a few round trips. */
export interface ClusterMetricsSnapshot {
  /** Services per actual state: every state is present, 0 when no service is in it. */
  services: Record<ServiceStatusName, number>;
  /** Every registered host (alive or within the reaper's grace) with its capacity and allocations. */
  hosts: HostCapacity[];
  /** Every monocore queue, per-host ones included. */
  queues: QueueDepth[];
  durations: HistogramSeries[];
  counters: CounterSeries[];
}

/**
 * Reads the cluster's metrics from Redis: service states, hosts, queue depths,
 * and the series workers, pullers and APIs recorded (metrics-recorder.ts).
 * Stateless apart from a cache of Queue handles, so every API process can
 * serve /metrics and any of them gives the same answer.
 */
export class ClusterMetrics {
  readonly #state: StateStore;
  readonly #hosts: HostRegistry;
  readonly #queues = new Map<string, Queue>();

  constructor(
    private readonly redis: Redis,
    private readonly logger?: Logger,
  ) {
    this.#state = new StateStore(redis);
    this.#hosts = new HostRegistry(redis);
  }

  async read(): Promise<ClusterMetricsSnapshot> {
    const [services, hosts, queues, series] = await Promise.all([this.#services(), this.#hosts.list(), this.#queueDepths(), this.#series()]);
    return { services, hosts, queues, ...series };
  }

  async #services(): Promise<Record<ServiceStatusName, number>> {
    const counts = Object.fromEntries(SERVICE_STATUSES.map((s) => [s, 0])) as Record<ServiceStatusName, number>;
    const records = await this.#state.getFields(await this.#state.names(), ['status']);
    for (const r of records.values()) if (r.status in counts) counts[r.status]++;
    return counts;
  }

  async #queueDepths(): Promise<QueueDepth[]> {
    const names = await findQueueNames(this.redis);
    return Promise.all(
      names.map(async (name) => ({ queue: name, counts: (await this.#queue(name).getJobCounts(...QUEUE_JOB_STATES)) as Record<QueueJobState, number> })),
    );
  }

  #queue(name: string): Queue {
    let q = this.#queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.redis, prefix: QUEUE_PREFIX });
      q.on('error', (err: Error) => this.logger?.debug({ err: err.message, queue: name }, 'metrics queue handle error'));
      this.#queues.set(name, q);
    }
    return q;
  }

  async #series(): Promise<{ durations: HistogramSeries[]; counters: CounterSeries[] }> {
    const ids = (await this.redis.smembers(Keys.metricSeriesIndex())).sort();
    const durations: HistogramSeries[] = [];
    const counters: CounterSeries[] = [];
    if (ids.length === 0) return { durations, counters };
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(Keys.metricSeries(id));
    const res = (await pipe.exec()) ?? [];
    const expired: string[] = [];
    ids.forEach((id, i) => {
      const [err, value] = res[i] ?? [null, {}];
      if (err) throw err;
      const h = value as Record<string, string>;
      if (Object.keys(h).length === 0) {
        expired.push(id);
        return;
      }
      const labels = parseLabels(h.labels);
      if (h.type === 'duration' && h.metric && h.metric in DURATIONS) {
        durations.push(histogramOf(h.metric as DurationKind, labels, h));
      } else if (h.type === 'counter' && h.metric && h.metric in COUNTERS) {
        counters.push({ kind: h.metric as CounterKind, labels, value: Number(h.value ?? 0) });
      }
      // Anything else was written by another release (a metric since removed): not rendered.
    });
    // Series past their TTL: drop them from the index too (a write in between re-adds its id).
    if (expired.length > 0) await this.redis.srem(Keys.metricSeriesIndex(), ...expired);
    return { durations, counters };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close().catch(() => undefined)));
    this.#queues.clear();
  }
}

function parseLabels(json: string | undefined): Record<string, string> {
  try {
    const v = JSON.parse(json ?? '{}') as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
    return Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

/**
 * Prometheus buckets are cumulative: count(le = b) is every observation whose
 * stored bucket bound is <= b. Stored bounds that are no longer in the table
 * (buckets changed between releases) still count toward the next bound above them.
 */
function histogramOf(kind: DurationKind, labels: Record<string, string>, h: Record<string, string>): HistogramSeries {
  const bounds = durationBuckets(kind);
  const stored: Array<{ bound: number; n: number }> = [];
  for (const [field, v] of Object.entries(h)) {
    if (!field.startsWith('le:')) continue;
    const raw = field.slice(3);
    const bound = raw === '+Inf' ? Infinity : Number(raw);
    if (!Number.isNaN(bound)) stored.push({ bound, n: Number(v) });
  }
  const count = Number(h.count ?? 0);
  const buckets = bounds.map((le) => ({ le, count: stored.reduce((a, s) => (s.bound <= le ? a + s.n : a), 0) }));
  buckets.push({ le: Infinity, count });
  return { kind, labels, buckets, sum: Number(h.sum ?? 0), count };
}
