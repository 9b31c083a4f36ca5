/**
 * The metrics that workers, pullers and the API record into Redis, and that
 * `GET /metrics` renders for Prometheus: one entry per metric, its exposed
 * name, help text and label names. The recorder (metrics-recorder.ts) and the
 * reader (cluster-metrics.ts) both work from this table, so adding a duration
 * is one line here plus one `recorder.observe('<kind>', seconds)` where it
 * happens, e.g.
 *
 *   exec: { name: 'monocore_exec_duration_seconds', help: 'A command run in a running microVM', labels: ['host'] },
 *
 * A series carries the labels listed here, taken from the recorder that wrote
 * it (workers and pullers: `host`) and from the call; others are dropped, so a
 * cluster-wide counter recorded on several hosts stays one series. A label
 * listed but not given is rendered as "" (every series of a metric has the
 * same label names).
 */

/**
 * Upper bounds (seconds) of the duration histograms. One set for all: a warm
 * pull takes milliseconds, a boot ~0.2 s under KVM and 2-4 s under TCG, a cold
 * pull of a large image minutes.
 */
export const DURATION_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export interface DurationMetric {
  /** Exposed name; Prometheus convention: `_seconds` suffix. */
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  /** Default DURATION_BUCKETS. */
  readonly buckets?: readonly number[];
}

export interface CounterMetric {
  /** Exposed name; Prometheus convention: `_total` suffix. */
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
}

export const DURATIONS = {
  pull: {
    name: 'monocore_pull_duration_seconds',
    help: 'Image pulls on a worker host, from dequeue to an unpacked rootfs. cache: warm (already here: one manifest HEAD), cold (downloaded and unpacked), joined (waited for the same pull already running on the host). Failed pulls are not observed.',
    labels: ['host', 'cache'],
  },
  unpack: {
    name: 'monocore_unpack_duration_seconds',
    help: 'Time a cold pull spent applying layers and committing the image rootfs (waits for downloads excluded: unpacking overlaps the download).',
    labels: ['host'],
  },
  boot: {
    name: 'monocore_boot_duration_seconds',
    help: "MicroVM boots, first starts and restarts alike: from the hypervisor's start until the guest reports that the service's command started. Failed boots are not observed.",
    labels: ['host', 'backend'],
  },
} as const satisfies Record<string, DurationMetric>;

export const COUNTERS = {
  restarts: {
    name: 'monocore_service_restarts_total',
    help: 'Restarts of services after an unexpected exit (restart policy), per host.',
    labels: ['host'],
  },
  deployments: {
    name: 'monocore_deployments_total',
    help: 'Requests recorded by the API: kind up, down or remove.',
    labels: ['kind'],
  },
  deploymentsFinished: {
    name: 'monocore_deployments_finished_total',
    help: 'Requests whose every job settled. outcome: ok, or failed when at least one job failed for good.',
    labels: ['kind', 'outcome'],
  },
} as const satisfies Record<string, CounterMetric>;

export type DurationKind = keyof typeof DURATIONS;
export type CounterKind = keyof typeof COUNTERS;

/** The histogram bounds of a duration (its own, or DURATION_BUCKETS). */
export function durationBuckets(kind: DurationKind): readonly number[] {
  const spec: DurationMetric = DURATIONS[kind];
  return spec.buckets ?? DURATION_BUCKETS;
}

/**
 * How long a series is kept after its last update. Host ids come and go
 * (a compose replica gets a new one when it is recreated): series of hosts that
 * stopped reporting expire instead of piling up. Prometheus keeps the history.
 */
export const METRIC_SERIES_TTL_MS = 30 * 24 * 3600 * 1000;
