/**
 * Every Redis key monocore's own state uses, built in one place. All keys carry
 * the `{monocore}` hash tag, so with Redis Cluster they share one slot with the
 * BullMQ queues (prefix `{monocore}` too) and Lua scripts may touch several.
 *
 *   {monocore}:services                  set of service names with state
 *   {monocore}:service:<name>            hash: desired + actual state of one service
 *   {monocore}:events                    capped stream of every state change
 *   {monocore}:lease:<subject>           "<host>:<epoch>" with a TTL: who may run the service or sandbox (fencing);
 *                                        a subject is a service name or `sandbox:<id>` (leaseRecordKey)
 *   {monocore}:hosts                     set of host ids ever registered (pruned when reaped)
 *   {monocore}:host:<id>                 hash: host info (cpus, ram, backends, free capacity)
 *   {monocore}:host:<id>:alive           heartbeat key with a TTL
 *   {monocore}:host:<id>:alloc           hash: service (or `sandbox:<id>`) -> "cpus:ramMib" placed on the host
 *   {monocore}:deployment:<id>           hash: one up/down/remove request
 *   {monocore}:logs:<name>:<stream>      capped stream of a service's output lines
 *   {monocore}:lock:<name>               short mutual-exclusion locks (placement, reaping)
 *   {monocore}:metrics                   set of the metric series recorded (observability/metrics-recorder.ts)
 *   {monocore}:metric:<series>           hash: one series (kind, metric, labels JSON; histogram
 *                                        buckets `le:<bound>`, `sum`, `count`; or a counter's `value`)
 *   {monocore}:sandboxes                 sorted set: sandbox ids by creation time (ended ones leave with their record)
 *   {monocore}:sandbox:<id>              hash: one sandbox; expires a retention period after it ended
 *   {monocore}:inbox:host:<id>           stream: relay calls and their upstream data for one worker host (relay/)
 *   {monocore}:inbox:api:<random>        stream: relay answers and downstream data for one API process
 */
export const HASH_TAG = '{monocore}';

export const Keys = {
  services: (): string => `${HASH_TAG}:services`,
  service: (name: string): string => `${HASH_TAG}:service:${name}`,
  /** What service(name) puts before the name, for Lua scripts that build the keys of names they read. */
  servicePrefix: (): string => `${HASH_TAG}:service:`,
  events: (): string => `${HASH_TAG}:events`,
  lease: (name: string): string => `${HASH_TAG}:lease:${name}`,
  hosts: (): string => `${HASH_TAG}:hosts`,
  host: (id: string): string => `${HASH_TAG}:host:${id}`,
  hostAlive: (id: string): string => `${HASH_TAG}:host:${id}:alive`,
  hostAlloc: (id: string): string => `${HASH_TAG}:host:${id}:alloc`,
  deployment: (id: string): string => `${HASH_TAG}:deployment:${id}`,
  logs: (name: string, stream: 'stdout' | 'stderr'): string => `${HASH_TAG}:logs:${name}:${stream}`,
  lock: (name: string): string => `${HASH_TAG}:lock:${name}`,
  metricSeriesIndex: (): string => `${HASH_TAG}:metrics`,
  metricSeries: (series: string): string => `${HASH_TAG}:metric:${series}`,
  sandboxes: (): string => `${HASH_TAG}:sandboxes`,
  sandbox: (id: string): string => `${HASH_TAG}:sandbox:${id}`,
  /** A relay reader's stream: `host:<id>` (a worker host) or `api:<random>` (an API process). */
  inbox: (owner: string): string => `${HASH_TAG}:inbox:${owner}`,
} as const;

/** Approximate caps (XADD MAXLEN ~) of the capped streams. */
export const STREAM_CAPS = {
  events: 10_000,
  logLines: 5_000,
} as const;

/** The lease subject of a sandbox (services' subjects are their names, which never contain ":"). */
export const sandboxSubject = (id: string): string => `sandbox:${id}`;

/** A sandbox's id from its lease subject, or undefined for a service's. */
export const sandboxOfSubject = (subject: string): string | undefined =>
  subject.startsWith('sandbox:') ? subject.slice('sandbox:'.length) : undefined;

/** The hash whose `host` and `epoch` a lease subject's lease is checked against (acquire/renew scripts). */
export const leaseRecordKey = (subject: string): string => {
  const sb = sandboxOfSubject(subject);
  return sb === undefined ? Keys.service(subject) : Keys.sandbox(sb);
};
