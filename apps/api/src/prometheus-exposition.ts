import { AggregatorRegistry, Registry, collectDefaultMetrics, type PrometheusContentType } from 'prom-client';
import { COUNTERS, DURATIONS, QUEUE_JOB_STATES, VERSION, heartbeatAgeMs, type ClusterMetricsSnapshot } from '@monocore/engine';

/** One metric family in the shape prom-client's getMetricsAsJSON() produces. */
interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter' | 'histogram';
  aggregator: 'sum';
  values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
}

const gauge = (name: string, help: string, values: Family['values']): Family => ({ name, help, type: 'gauge', aggregator: 'sum', values });

/**
 * Renders GET /metrics: this API process's own metrics (prom-client's default
 * process and Node.js metrics) and the cluster's, read from Redis for every
 * scrape. The cluster's numbers were measured by other processes (workers,
 * pullers, other APIs), so they are handed to prom-client as data: metric
 * families in getMetricsAsJSON()'s shape, turned into a registry by
 * AggregatorRegistry.aggregate — the path prom-client's cluster mode uses to
 * expose what its worker processes measured. Names and label values are
 * escaped by prom-client.
 */
export class PrometheusExposition {
  readonly #process = processRegistry();

  get contentType(): string {
    return this.#process.contentType;
  }

  /** The text exposition; `cluster` undefined means Redis could not be read (monocore_cluster_up 0). */
  async render(cluster: ClusterMetricsSnapshot | undefined, now = Date.now()): Promise<string> {
    const families = [
      gauge('monocore_cluster_up', '1 when the cluster state was read from Redis for this scrape, 0 when Redis did not answer (only process metrics then).', [
        { value: cluster ? 1 : 0, labels: {} },
      ]),
      gauge('monocore_api_info', 'The monocore release of the API process that answered this scrape.', [{ value: 1, labels: { version: VERSION } }]),
      ...(cluster ? clusterFamilies(cluster, now) : []),
    ];
    const registry = Registry.merge([this.#process, AggregatorRegistry.aggregate<PrometheusContentType>([families])]);
    return registry.metrics();
  }
}

let shared: Registry<PrometheusContentType> | undefined;

/**
 * The process's own metrics, collected once per process however many APIs it
 * builds (the default collectors start an event-loop-delay monitor each).
 */
function processRegistry(): Registry<PrometheusContentType> {
  if (!shared) {
    shared = new Registry<PrometheusContentType>();
    collectDefaultMetrics({ register: shared });
  }
  return shared;
}

function clusterFamilies(c: ClusterMetricsSnapshot, now: number): Family[] {
  type Host = ClusterMetricsSnapshot['hosts'][number];
  // A host whose value is unknown (undefined) has no series in that family.
  const perHost = (name: string, help: string, value: (h: Host) => number | undefined): Family =>
    gauge(name, help, c.hosts.flatMap((h) => {
      const v = value(h);
      return v === undefined ? [] : [{ value: v, labels: { host: h.id } }];
    }));
  const mib = 1024 * 1024;
  return [
    gauge(
      'monocore_services',
      'Services by actual state (pending, pulling, starting, running, restarting, exited, failed, blocked, stopping, stopped, lost).',
      Object.entries(c.services).map(([state, n]) => ({ value: n, labels: { state } })),
    ),
    gauge(
      'monocore_queue_jobs',
      'BullMQ jobs per monocore queue (per-host queues included) and job state.',
      c.queues.flatMap((q) => QUEUE_JOB_STATES.map((state) => ({ value: q.counts[state] ?? 0, labels: { queue: q.queue, state } }))),
    ),
    perHost('monocore_host_up', '1 while the host heartbeats, 0 once its heartbeat expired (until the reaper removes it).', (h) => (h.alive ? 1 : 0)),
    gauge(
      'monocore_host_info',
      'Always 1: the backend, the acceleration it really uses (after the boot probe) and the monocore release of each host.',
      c.hosts.map((h) => ({ value: 1, labels: { host: h.id, backend: h.backends.join(','), accel: h.accel ?? '', version: h.version ?? '' } })),
    ),
    perHost('monocore_host_cpus', 'vCPUs the host offers to the scheduler.', (h) => h.cpus),
    perHost('monocore_host_cpus_allocated', 'vCPUs of the services placed on the host.', (h) => h.usedCpus),
    perHost('monocore_host_memory_bytes', 'Guest memory the host offers to the scheduler.', (h) => h.ramMib * mib),
    perHost('monocore_host_memory_allocated_bytes', 'Guest memory of the services placed on the host.', (h) => h.usedRamMib * mib),
    perHost('monocore_host_services', 'Services placed on the host.', (h) => Object.keys(h.allocations).length),
    perHost('monocore_host_spares', 'Sandbox restores the host holds ahead of the next create (MONOCORE_SPARES).', (h) => h.spares?.count),
    perHost(
      'monocore_host_spare_memory_bytes',
      'Guest memory of those spares: resident while they wait, not in monocore_host_memory_allocated_bytes (a start that needs it discards them).',
      (h) => (h.spares ? h.spares.ramMib * mib : undefined),
    ),
    perHost('monocore_host_heartbeat_age_seconds', "Seconds since the host's last heartbeat (by the host's clock).", (h) => {
      const ms = heartbeatAgeMs(h, now);
      return ms === undefined ? undefined : ms / 1000;
    }),
    ...durationFamilies(c),
    ...counterFamilies(c),
  ];
}

/** Every label of the catalogue present on every series ("" when not recorded), in the catalogue's order. */
function withLabels(names: readonly string[], labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(names.map((n) => [n, labels[n] ?? '']));
}

function durationFamilies(c: ClusterMetricsSnapshot): Family[] {
  return Object.entries(DURATIONS).map(([kind, spec]) => ({
    name: spec.name,
    help: spec.help,
    type: 'histogram',
    aggregator: 'sum',
    values: c.durations
      .filter((s) => s.kind === kind)
      .flatMap((s) => {
        const labels = withLabels(spec.labels, s.labels);
        return [
          ...s.buckets.map((b) => ({ metricName: `${spec.name}_bucket`, value: b.count, labels: { ...labels, le: b.le === Infinity ? '+Inf' : b.le } })),
          { metricName: `${spec.name}_sum`, value: s.sum, labels },
          { metricName: `${spec.name}_count`, value: s.count, labels },
        ];
      }),
  }));
}

function counterFamilies(c: ClusterMetricsSnapshot): Family[] {
  return Object.entries(COUNTERS).map(([kind, spec]) => ({
    name: spec.name,
    help: spec.help,
    type: 'counter',
    aggregator: 'sum',
    values: c.counters.filter((s) => s.kind === kind).map((s) => ({ value: s.value, labels: withLabels(spec.labels, s.labels) })),
  }));
}
