import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RegistryPolicyData } from '../oci/registry-policy.js';
import type { ClusterMetricsSnapshot } from '../observability/cluster-metrics.js';
import type { HostCapacity } from '../state/host-registry.js';
import type { ServiceStatus, StateEvent } from '../state/service-record.js';

export type { ServiceStatus, StateEvent, HostCapacity, ClusterMetricsSnapshot };

/**
 * The typed contract between the REST layer (apps/api, the CLI's embedded mode)
 * and the orchestration engine. `Orchestrator` implements it; the API codes
 * against this interface only.
 *
 * Every method talks to Redis only: the API stays stateless and several API
 * instances can run side by side.
 */
export interface OrchestratorOptions {
  /** An ioredis connection to reuse (it is duplicated for blocking reads; not closed by close()). */
  connection?: Redis;
  /** Or a Redis URL, e.g. redis://127.0.0.1:6379/0 (a connection is opened and closed by close()). */
  redisUrl?: string;
  logger?: Logger;
  /** Job tuning; defaults suit production. Tests shorten the backoffs. */
  jobs?: Partial<JobTuning>;
}

export interface JobTuning {
  /** Attempts of a start (boot) job before the service is failed. Default 3. */
  startAttempts: number;
  /** Base of the exponential backoff between boot attempts, ms. Default 1000. */
  startBackoffMs: number;
  /** Attempts of a pull job. Default 3. */
  pullAttempts: number;
  /** Base of the exponential backoff between pull attempts, ms. Default 2000. */
  pullBackoffMs: number;
  /** Safety re-check period of an `await` gate when no promotion arrives, ms. Default 2000. */
  gatePollMs: number;
}

/** Which services a call applies to: everything, one group, or named services. */
export interface Selector {
  group?: string;
  services?: string[];
}

export interface UpOptions extends Selector {
  /** Resolve only when every selected service is running or has failed/blocked. */
  wait?: boolean;
  /** With wait: give up after this long (MC_ORCH_TIMEOUT). Default 10 minutes. */
  timeoutMs?: number;
  /** A REST caller's registry policy: the puller checks every address it connects to for these images. */
  registryPolicy?: RegistryPolicyData;
}

export interface DownOptions extends Selector {
  /** Resolve only when every selected service has stopped. */
  wait?: boolean;
  timeoutMs?: number;
}

export type RemoveOptions = DownOptions;

/** What up() decided for one service. */
export interface PlannedService {
  name: string;
  group?: string;
  host: string;
  /** Topological level: 0 has no dependencies; a service starts after all lower levels it depends on. */
  level: number;
  dependsOn: string[];
  /** start: new or changed (restarted); unchanged: already running with the same config hash. */
  action: 'start' | 'restart' | 'unchanged';
  configHash: string;
}

export interface UpResult {
  deploymentId: string;
  /** Services in start order (by level, then name). */
  plan: PlannedService[];
  /** With wait=true: the final status of every service; otherwise their status right after enqueueing. */
  services: ServiceStatus[];
}

export interface DownResult {
  deploymentId: string;
  /** Services in stop order (dependents first). */
  order: string[];
  services: ServiceStatus[];
}

export interface EventsOptions {
  /** Stream id to resume after; '0' replays what the capped stream still holds; default: only new events. */
  since?: string;
  signal?: AbortSignal;
}

export interface LogsOptions {
  stream: 'stdout' | 'stderr';
  /** Last N lines first (default 100). */
  tail?: number;
  /** Keep yielding new lines until the signal aborts or close(). */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface DeploymentOutcome {
  deploymentId: string;
  /** true when every service of the deployment reached its goal (running for up, stopped for down). */
  ok: boolean;
  services: ServiceStatus[];
}

/** The engine API the REST layer calls. */
export interface OrchestratorApi {
  /**
   * Validate (MC_CONFIG_INVALID with every issue), plan, place on registered hosts,
   * record desired state and enqueue one BullMQ flow. Idempotent.
   * `config` is a MonocoreConfig or a raw JSON/TOML-parsed object: it is validated again here.
   */
  up(config: unknown, options?: UpOptions): Promise<UpResult>;
  /** Stop in reverse dependency order (dependents first). */
  down(options?: DownOptions): Promise<DownResult>;
  /** Stop if needed, then delete the writable layer and the state. */
  remove(options?: RemoveOptions): Promise<DownResult>;
  status(selector?: Selector): Promise<ServiceStatus[]>;
  events(options?: EventsOptions): AsyncIterable<StateEvent>;
  logs(service: string, options: LogsOptions): AsyncIterable<string>;
  waitFor(deploymentId: string, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<DeploymentOutcome>;
  /**
   * Every registered worker host: capacity and what is placed on it, backend and
   * acceleration in use, monocore version, last heartbeat, alive or not (a dead
   * host stays listed until the reaper removes it).
   */
  listHosts(): Promise<HostCapacity[]>;
  /** The cluster's state for GET /metrics: services by state, hosts, queue depths, recorded durations and counters. */
  metrics(): Promise<ClusterMetricsSnapshot>;
  close(): Promise<void>;
}
