// Public surface of the observability domain: what workers, pullers and the API
// record into Redis, and the cluster-wide reader GET /metrics renders.
export { DURATIONS, COUNTERS, DURATION_BUCKETS, METRIC_SERIES_TTL_MS, durationBuckets } from './recorded-metrics.js';
export type { DurationKind, CounterKind, DurationMetric, CounterMetric } from './recorded-metrics.js';
export { MetricsRecorder, seriesId, bucketField } from './metrics-recorder.js';
export type { MetricLabels, MetricsRecorderOptions, DurationLabels, CounterLabels } from './metrics-recorder.js';
export { ClusterMetrics, QUEUE_JOB_STATES } from './cluster-metrics.js';
export type { ClusterMetricsSnapshot, QueueDepth, QueueJobState, HistogramSeries, CounterSeries } from './cluster-metrics.js';
