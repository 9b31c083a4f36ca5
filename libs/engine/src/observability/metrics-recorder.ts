import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Keys } from '../state/keys.js';
import { COUNTERS, DURATIONS, durationBuckets, METRIC_SERIES_TTL_MS, type CounterKind, type DurationKind } from './recorded-metrics.js';

/** Label values by label name. */
export type MetricLabels = Readonly<Record<string, string>>;

/** The labels a metric of the catalogue declares (compile-time check of the call sites). */
type LabelsOf<L extends readonly string[]> = Partial<Record<L[number], string>>;
export type DurationLabels<K extends DurationKind> = LabelsOf<(typeof DURATIONS)[K]['labels']>;
export type CounterLabels<K extends CounterKind> = LabelsOf<(typeof COUNTERS)[K]['labels']>;

/**
 * Id of one series: `<kind>:<name>=<value>,…` with label names sorted and
 * values URI-encoded, so the same labels always land in the same hash and the
 * id never contains ':' after the kind.
 */
export function seriesId(kind: string, labels: MetricLabels): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${encodeURIComponent(labels[k] ?? '')}`);
  return `${kind}:${parts.join(',')}`;
}

/** The hash field of the histogram bucket a value falls in: the smallest bound >= value, else +Inf. */
export function bucketField(seconds: number, buckets: readonly number[]): string {
  const bound = buckets.find((b) => seconds <= b);
  return `le:${bound === undefined ? '+Inf' : String(bound)}`;
}

export interface MetricsRecorderOptions {
  /** Labels of every series this recorder writes, where the metric declares them (a worker's or puller's: `{ host }`). */
  labels?: MetricLabels;
  /** Where a write that failed is reported (at debug level: metrics never fail the work they measure). */
  logger?: Logger;
}

/**
 * Records what happens on a host into Redis, for `GET /metrics` of any API
 * process to render: no scrape target per worker. A duration goes into its
 * histogram hash as one bucket increment (HINCRBY of the one bucket it falls
 * in; the reader accumulates them into Prometheus's cumulative `le` buckets)
 * plus `sum` and `count`; a counter is one HINCRBY. Each write is one
 * MULTI/EXEC, so a reader never sees a count without its bucket.
 *
 * Calls never reject: a metric that cannot be written (Redis away) is dropped
 * and logged, and callers need not await them.
 */
export class MetricsRecorder {
  readonly #labels: MetricLabels;

  constructor(
    private readonly redis: Redis,
    private readonly options: MetricsRecorderOptions = {},
  ) {
    this.#labels = options.labels ?? {};
  }

  /** One observation of a duration, in seconds. */
  observe<K extends DurationKind>(kind: K, seconds: number, labels: DurationLabels<K> = {}): Promise<void> {
    if (!Number.isFinite(seconds) || seconds < 0) {
      this.options.logger?.debug({ metric: kind, seconds }, 'metric observation dropped: not a duration');
      return Promise.resolve();
    }
    const all = this.#labelsFor(DURATIONS[kind].labels, labels);
    const id = seriesId(kind, all);
    const key = Keys.metricSeries(id);
    return this.#write(kind, () =>
      this.redis
        .multi()
        .hset(key, { type: 'duration', metric: kind, labels: JSON.stringify(all) })
        .hincrby(key, bucketField(seconds, durationBuckets(kind)), 1)
        .hincrby(key, 'count', 1)
        .hincrbyfloat(key, 'sum', seconds)
        .pexpire(key, METRIC_SERIES_TTL_MS)
        .sadd(Keys.metricSeriesIndex(), id)
        .exec(),
    );
  }

  /** Starts a stopwatch; calling the result observes the time elapsed since (labels may be added then). */
  startTimer<K extends DurationKind>(kind: K, labels: DurationLabels<K> = {}): (more?: DurationLabels<K>) => Promise<void> {
    const t0 = performance.now();
    return (more = {}) => this.observe(kind, (performance.now() - t0) / 1000, { ...labels, ...more });
  }

  /** Adds `by` (default 1) to a counter. */
  increment<K extends CounterKind>(kind: K, labels: CounterLabels<K> = {}, by = 1): Promise<void> {
    const all = this.#labelsFor(COUNTERS[kind].labels, labels);
    const id = seriesId(kind, all);
    const key = Keys.metricSeries(id);
    return this.#write(kind, () =>
      this.redis
        .multi()
        .hset(key, { type: 'counter', metric: kind, labels: JSON.stringify(all) })
        .hincrby(key, 'value', by)
        .pexpire(key, METRIC_SERIES_TTL_MS)
        .sadd(Keys.metricSeriesIndex(), id)
        .exec(),
    );
  }

  /**
   * The recorder's labels and the call's, restricted to those the metric
   * declares: a cluster-wide counter (deployments) recorded by several workers
   * is one series, not one per host.
   */
  #labelsFor(declared: readonly string[], labels: object): Record<string, string> {
    const merged: Record<string, string | undefined> = { ...this.#labels, ...(labels as MetricLabels) };
    const out: Record<string, string> = {};
    for (const name of declared) {
      const v = merged[name];
      if (v !== undefined) out[name] = v;
    }
    return out;
  }

  async #write(metric: string, send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } catch (err) {
      this.options.logger?.debug({ metric, err: err instanceof Error ? err.message : String(err) }, 'metric not recorded');
    }
  }
}
