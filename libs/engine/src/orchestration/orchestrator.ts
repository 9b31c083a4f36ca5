import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Queue, type FlowJob } from 'bullmq';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { validateConfig, resolveService, type ResolvedService } from '../config/index.js';
import { checkDeployable } from './check-deployable.js';
import { MonocoreError } from '../errors/index.js';
import type { RegistryPolicyData } from '../oci/registry-policy.js';
import { ClusterMetrics, type ClusterMetricsSnapshot } from '../observability/cluster-metrics.js';
import { MetricsRecorder } from '../observability/metrics-recorder.js';
import { planServices } from '../plan/index.js';
import { HostRegistry, type HostCapacity } from '../state/host-registry.js';
import { Keys } from '../state/keys.js';
import { LIVE_STATUSES, SETTLED_UP_STATUSES } from '../state/service-state.js';
import { toServiceStatus, type ServiceRecord } from '../state/service-record.js';
import { StateStore } from '../state/state-store.js';
import { lastStreamId, tailEvents, tailStream } from '../state/stream-tail.js';
import { configHash } from './config-hash.js';
import { buildFlowTree, shapeDag, type FlowNode } from './flow-builder.js';
import type {
  DeploymentOutcome,
  DownOptions,
  DownResult,
  EventsOptions,
  JobTuning,
  LogsOptions,
  OrchestratorApi,
  OrchestratorOptions,
  PlannedService,
  RemoveOptions,
  Selector,
  ServiceStatus,
  StateEvent,
  UpOptions,
  UpResult,
} from './orchestrator-api.js';
import { placeServices, type PlacementRequest } from './placement.js';
import {
  JobIds,
  QUEUE_PREFIX,
  QueueNames,
  type DeployJobData,
  type ExpandJobData,
  type GateJobData,
  type PullJobData,
  type StartJobData,
  type StopJobData,
} from './queues.js';

export const DEFAULT_JOB_TUNING: JobTuning = {
  startAttempts: 3,
  startBackoffMs: 1000,
  pullAttempts: 3,
  pullBackoffMs: 2000,
  gatePollMs: 2000,
};

/** Jobs stay for the life of a request (a removed job's id can be reused: docs/ORCHESTRATION.md), then age out. */
const KEEP_COMPLETED = { age: 24 * 3600, count: 50_000 };
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 50_000 };

export function newDeploymentId(): string {
  return `d${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * The engine API the REST layer calls: validates, plans, places and enqueues
 * flows; reads state, events and logs from Redis. Holds no state of its own,
 * so any number of API processes may use it side by side.
 */
export class Orchestrator implements OrchestratorApi {
  readonly redis: Redis;
  readonly logger: Logger;
  readonly tuning: JobTuning;
  readonly state: StateStore;
  readonly hosts: HostRegistry;
  readonly #ownsConnection: boolean;
  readonly #deployQueue: Queue;
  readonly #metrics: MetricsRecorder;
  #clusterMetrics?: ClusterMetrics;
  #closed = false;
  readonly #closeController = new AbortController();

  constructor(options: OrchestratorOptions) {
    if (options.connection) {
      this.redis = options.connection;
      this.#ownsConnection = false;
    } else if (options.redisUrl) {
      // Keep retrying to reconnect after a Redis restart; fail each command after a few tries.
      this.redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 3 });
      this.#ownsConnection = true;
      this.redis.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'redis connection error'));
    } else {
      throw new MonocoreError('MC_USAGE', 'Orchestrator needs `connection` or `redisUrl`', {});
    }
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.tuning = { ...DEFAULT_JOB_TUNING, ...options.jobs };
    this.state = new StateStore(this.redis);
    this.hosts = new HostRegistry(this.redis);
    this.#deployQueue = new Queue(QueueNames.deploy, { connection: this.redis, prefix: QUEUE_PREFIX });
    this.#deployQueue.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'deploy queue error'));
    this.#metrics = new MetricsRecorder(this.redis, { logger: this.logger });
  }

  // --- up ----------------------------------------------------------------------

  async up(input: unknown, options: UpOptions = {}): Promise<UpResult> {
    const config = validateConfig(input);
    const selection: { group?: string; services?: string[] } = {};
    if (options.group !== undefined) selection.group = options.group;
    if (options.services !== undefined) selection.services = options.services;
    const plan = planServices(config, selection);
    const level = new Map<string, number>();
    plan.levels.forEach((names, i) => names.forEach((n) => level.set(n, i)));
    const resolved = new Map<string, ResolvedService>(plan.selected.map((n) => [n, resolveService(config, n)]));
    checkDeployable([...resolved.values()]);
    const hashes = new Map([...resolved].map(([n, r]) => [n, configHash(r as unknown as Record<string, unknown>)]));
    const deploymentId = newDeploymentId();

    const epochOf = new Map<string, number>();
    /** The services' status right after this request was recorded (returned without wait). */
    const snapshot: ServiceStatus[] = [];
    const planned = await this.hosts.withLock('placement', 10_000, async () => {
      const [records, allHosts] = await Promise.all([this.state.getBrief(plan.order), this.hosts.list()]);
      const alive = allHosts.filter((h) => h.alive);
      const aliveIds = new Set(alive.map((h) => h.id));
      // Capacity net of the services being placed now (they are re-placed).
      const net: HostCapacity[] = alive.map((h) => {
        let cpus = h.freeCpus;
        let ram = h.freeRamMib;
        for (const n of plan.order) {
          const a = h.allocations[n];
          if (a) {
            cpus += a.cpus;
            ram += a.ramMib;
          }
        }
        return { ...h, freeCpus: cpus, freeRamMib: ram };
      });
      // A group already running (partly) somewhere stays there: its network is host-local.
      const groupHosts = new Map<string, string>();
      const selectedSet = new Set(plan.order);
      if (plan.order.some((n) => resolved.get(n)?.group)) {
        for (const rec of await this.state.listSummary()) {
          if (selectedSet.has(rec.name) || !rec.group || !rec.host || !aliveIds.has(rec.host)) continue;
          if (rec.desired === 'running' && LIVE_STATUSES.includes(rec.status)) groupHosts.set(rec.group, rec.host);
        }
      }
      const requests: PlacementRequest[] = plan.order.map((n) => {
        const r = resolved.get(n)!;
        const rec = records.get(n);
        const req: PlacementRequest = { name: n, cpus: r.cpus, ramMib: r.ram };
        if (r.group) req.group = r.group;
        if (rec?.host && aliveIds.has(rec.host)) req.currentHost = rec.host;
        return req;
      });
      const placement = placeServices(requests, net, groupHosts);

      // Every write of the request in one MULTI (one round trip), then the few
      // fenced transitions of services that exist already.
      const out: PlannedService[] = [];
      const now = new Date().toISOString();
      const tx = this.redis.multi();
      const toPending: string[] = [];
      const allocs = new Map<string, Record<string, string>>();
      for (const n of plan.order) {
        const r = resolved.get(n)!;
        const rec = records.get(n);
        const host = placement.get(n)!;
        const hash = hashes.get(n)!;
        const unchanged = rec !== undefined && rec.status === 'running' && rec.host === host && rec.runningHash === hash;
        const action: PlannedService['action'] = unchanged
          ? 'unchanged'
          : rec && rec.host === host && LIVE_STATUSES.includes(rec.status)
            ? 'restart'
            : 'start';
        const epoch = rec ? (rec.host === host ? rec.epoch : rec.epoch + 1) : 1;
        epochOf.set(n, epoch);
        const fields: Record<string, string | number> = {
          name: n,
          group: r.group ?? '',
          desired: 'running',
          config: JSON.stringify(r),
          config_hash: hash,
          image: r.image ?? '',
          depends_on: JSON.stringify(r.dependsOn),
          cpus: r.cpus,
          ram_mib: r.ram,
          deployment_id: deploymentId,
          host,
          epoch,
        };
        if (action !== 'unchanged') {
          fields.attempts = 0;
          fields.restarts = 0;
        }
        if (!rec) {
          // New services need no per-service event: the request's `deployment` event lists them.
          tx.hset(Keys.service(n), { ...fields, status: 'pending', updated_at: now });
        } else {
          if (rec.host && rec.host !== host) tx.hdel(Keys.hostAlloc(rec.host), n);
          tx.hset(Keys.service(n), fields);
          // A running service being changed stays `running` until its worker restarts it.
          if (action === 'start' && rec.status !== 'pending') toPending.push(n);
        }
        const alloc = allocs.get(host) ?? {};
        alloc[n] = `${r.cpus}:${r.ram}`;
        allocs.set(host, alloc);
        const ps: PlannedService = {
          name: n,
          host,
          level: level.get(n) ?? 0,
          dependsOn: r.dependsOn,
          action,
          configHash: hash,
        };
        if (r.group) ps.group = r.group;
        out.push(ps);
        const st: ServiceStatus = {
          name: n,
          status: !rec || action === 'start' ? 'pending' : rec.status,
          desired: 'running',
          host,
          attempts: action === 'unchanged' ? (rec?.attempts ?? 0) : 0,
          restarts: action === 'unchanged' ? (rec?.restarts ?? 0) : 0,
          deploymentId,
          configHash: hash,
        };
        if (r.group) st.group = r.group;
        if (r.image) st.image = r.image;
        if (action === 'unchanged' && rec?.pid !== undefined) st.pid = rec.pid;
        if (action === 'unchanged' && rec?.startedAt) st.startedAt = rec.startedAt;
        snapshot.push(st);
      }
      tx.sadd(Keys.services(), ...plan.order);
      for (const [host, alloc] of allocs) tx.hset(Keys.hostAlloc(host), alloc);
      tx.hset(Keys.deployment(deploymentId), {
        id: deploymentId,
        kind: 'up',
        services: JSON.stringify(plan.order),
        created_at: now,
      });
      await tx.exec();
      await Promise.all(
        toPending.map((n) => this.state.tryTransition(n, { status: 'pending' }, { detail: `deployment ${deploymentId}` })),
      );
      return out;
    });

    const hostOf = new Map(planned.map((p) => [p.name, p.host]));
    const flow = this.upFlow(deploymentId, plan.order, resolved, hostOf, epochOf, options.registryPolicy);
    await this.enqueueFlow(deploymentId, flow);
    void this.#metrics.increment('deployments', { kind: 'up' });
    const created = planned.filter((p) => p.action === 'start').length;
    await this.state.emit({
      kind: 'deployment',
      deploymentId,
      detail: `up ${plan.order.length} services (${created} to start, ${planned.length - created} to keep or restart)`,
    });
    this.logger.info({ deploymentId, services: plan.order.length }, 'up enqueued');

    const services = options.wait
      ? (await this.waitFor(deploymentId, { timeoutMs: options.timeoutMs })).services
      : snapshot;
    return { deploymentId, plan: planned, services };
  }

  /** The flow of one up: request root → start jobs (deps as children, gates for extra edges, pull first). */
  upFlow(
    deploymentId: string,
    order: readonly string[],
    resolved: ReadonlyMap<string, ResolvedService>,
    hostOf: ReadonlyMap<string, string>,
    epochOf: ReadonlyMap<string, number>,
    registryPolicy?: RegistryPolicyData,
  ): FlowJob {
    const shape = shapeDag(order, (n) => resolved.get(n)?.dependsOn ?? []);
    const t = this.tuning;
    const tops = buildFlowTree(
      shape,
      (n, kids) => {
        const host = hostOf.get(n)!;
        const r = resolved.get(n)!;
        if (r.image) {
          const pull: PullJobData = { image: r.image, deploymentId, service: n };
          if (registryPolicy) pull.registryPolicy = registryPolicy;
          kids.unshift({
            name: 'pull',
            queueName: QueueNames.pull(host),
            data: pull,
            opts: {
              jobId: JobIds.pull(deploymentId, n),
              attempts: t.pullAttempts,
              backoff: { type: 'exponential', delay: t.pullBackoffMs },
              ignoreDependencyOnFailure: true,
              removeOnComplete: KEEP_COMPLETED,
              removeOnFail: KEEP_FAILED,
            },
          });
        }
        const data: StartJobData = {
          deploymentId,
          service: n,
          host,
          epoch: epochOf.get(n) ?? 1,
          awaitedBy: (shape.awaitedBy.get(n) ?? []).map((p) => JobIds.gate(deploymentId, p, n)),
          pollDependencies: false,
          ...(registryPolicy ? { registryPolicy } : {}),
        };
        return {
          name: 'start',
          queueName: QueueNames.host(host),
          data,
          opts: {
            jobId: JobIds.start(deploymentId, n),
            attempts: t.startAttempts,
            backoff: { type: 'exponential', delay: t.startBackoffMs },
            ignoreDependencyOnFailure: true,
            removeOnComplete: KEEP_COMPLETED,
            removeOnFail: KEEP_FAILED,
          },
          children: kids,
        };
      },
      (parent, target) => this.gateNode(deploymentId, parent, target, 'started'),
    );
    const root: DeployJobData = { deploymentId, kind: 'up', services: [...order] };
    return {
      name: 'deployment',
      queueName: QueueNames.deploy,
      data: root,
      opts: { jobId: deploymentId, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
      children: tops as FlowJob[],
    };
  }

  /** One job carrying the flow; a worker adds the flow atomically (see ExpandJobDataSchema). */
  async enqueueFlow(deploymentId: string, flow: FlowJob): Promise<void> {
    const data: ExpandJobData = { deploymentId, flow: flow as unknown as ExpandJobData['flow'] };
    await this.#deployQueue.add('expand', data, {
      jobId: `${deploymentId}.expand`,
      attempts: 10,
      backoff: { type: 'exponential', delay: 500 },
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    });
  }

  gateNode(deploymentId: string, parent: string, target: string, condition: GateJobData['condition']): FlowNode {
    const data: GateJobData = { deploymentId, parent, target, condition };
    return {
      name: 'await',
      queueName: QueueNames.gate,
      data,
      opts: {
        jobId: JobIds.gate(deploymentId, parent, target),
        attempts: 1,
        ignoreDependencyOnFailure: true,
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      },
    };
  }

  // --- down / remove -------------------------------------------------------------

  async down(options: DownOptions = {}): Promise<DownResult> {
    return this.teardown('down', options);
  }

  async remove(options: RemoveOptions = {}): Promise<DownResult> {
    return this.teardown('remove', options);
  }

  async select(selector: Selector): Promise<ServiceRecord[]> {
    const all = await this.state.listSummary();
    if (selector.group === undefined && selector.services === undefined) return all;
    const byName = new Map(all.map((r) => [r.name, r]));
    const out = new Map<string, ServiceRecord>();
    if (selector.group !== undefined) for (const r of all) if (r.group === selector.group) out.set(r.name, r);
    for (const n of selector.services ?? []) {
      const r = byName.get(n);
      if (!r) throw new MonocoreError('MC_ORCH_UNKNOWN_SERVICE', `no service "${n}" is recorded`, { service: n });
      out.set(n, r);
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async teardown(kind: 'down' | 'remove', options: DownOptions): Promise<DownResult> {
    const records = await this.select(options);
    const deploymentId = newDeploymentId();
    const names = records.map((r) => r.name);
    const selected = new Set(names);
    // Edges of the stop flow: a service waits for its dependents (within the selection) to stop.
    const dependents = new Map<string, string[]>(names.map((n) => [n, []]));
    for (const r of records) for (const d of r.dependsOn) if (selected.has(d)) dependents.get(d)!.push(r.name);
    const order = stopOrder(names, dependents);
    const aliveIds = new Set((await this.hosts.alive()).map((h) => h.id));
    const pipe = this.redis.multi();
    for (const n of names) pipe.hset(Keys.service(n), 'desired', 'stopped');
    await pipe.exec();
    await this.redis.hset(Keys.deployment(deploymentId), {
      id: deploymentId,
      kind,
      services: JSON.stringify(order),
      created_at: new Date().toISOString(),
    });
    if (names.length > 0) {
      const byName = new Map(records.map((r) => [r.name, r]));
      const shape = shapeDag(names, (n) => dependents.get(n) ?? []);
      const tops = buildFlowTree(
        shape,
        (n, kids) => {
          const host = byName.get(n)?.host ?? '';
          const data: StopJobData = {
            deploymentId,
            service: n,
            host,
            remove: kind === 'remove',
            awaitedBy: (shape.awaitedBy.get(n) ?? []).map((p) => JobIds.gate(deploymentId, p, n)),
          };
          // A service whose host is gone is settled by any worker (there is no VM left to stop).
          const queueName = host && aliveIds.has(host) ? QueueNames.host(host) : QueueNames.deploy;
          return {
            name: kind === 'remove' ? 'remove' : 'stop',
            queueName,
            data,
            opts: {
              jobId: JobIds.stop(deploymentId, n),
              attempts: 3,
              backoff: { type: 'exponential', delay: 500 },
              ignoreDependencyOnFailure: true,
              removeOnComplete: KEEP_COMPLETED,
              removeOnFail: KEEP_FAILED,
            },
            children: kids,
          };
        },
        (parent, target) => this.gateNode(deploymentId, parent, target, 'stopped'),
      );
      const root: DeployJobData = { deploymentId, kind, services: order };
      await this.enqueueFlow(deploymentId, {
        name: 'deployment',
        queueName: QueueNames.deploy,
        data: root,
        opts: { jobId: deploymentId, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
        children: tops as FlowJob[],
      });
    }
    void this.#metrics.increment('deployments', { kind });
    await this.state.emit({ kind: 'deployment', deploymentId, detail: `${kind} ${names.length} services` });
    const services = options.wait
      ? (await this.waitFor(deploymentId, { timeoutMs: options.timeoutMs })).services
      : (await this.select({ services: names.filter((n) => kind === 'down' || selected.has(n)) }).catch(() => [])).map(
          toServiceStatus,
        );
    return { deploymentId, order, services };
  }

  // --- reads -------------------------------------------------------------------

  async status(selector: Selector = {}): Promise<ServiceStatus[]> {
    return (await this.select(selector)).map(toServiceStatus);
  }

  async listHosts(): Promise<HostCapacity[]> {
    return this.hosts.list();
  }

  async metrics(): Promise<ClusterMetricsSnapshot> {
    this.#clusterMetrics ??= new ClusterMetrics(this.redis, this.logger);
    return this.#clusterMetrics.read();
  }

  async *events(options: EventsOptions = {}): AsyncIterable<StateEvent> {
    const since = options.since ?? (await lastStreamId(this.redis, Keys.events()));
    const until = linkedSignal(options.signal, this.#closeController.signal);
    try {
      yield* tailEvents(this.redis, since, {
        signal: until.signal,
        onError: (err) => this.logger.warn({ err }, 'events: read failed, retrying'),
      });
    } finally {
      until.unlink();
    }
  }

  async *logs(service: string, options: LogsOptions): AsyncIterable<string> {
    const key = Keys.logs(service, options.stream);
    const [known, hasLog] = await Promise.all([
      this.redis.sismember(Keys.services(), service),
      this.redis.exists(key),
    ]);
    if (known === 0 && hasLog === 0) {
      throw new MonocoreError('MC_ORCH_UNKNOWN_SERVICE', `no service "${service}" is recorded`, { service });
    }
    const tail = options.tail ?? 100;
    const last = await this.redis.xrevrange(key, '+', '-', 'COUNT', Math.max(1, tail));
    if (tail > 0) for (const [, f] of [...last].reverse()) yield f[1] ?? '';
    if (!options.follow) return;
    // After the newest line read above (shown or not, tail=0): none is shown twice or missed.
    const until = linkedSignal(options.signal, this.#closeController.signal);
    try {
      const lines = tailStream(this.redis, key, last[0]?.[0] ?? '0', {
        signal: until.signal,
        onError: (err) => this.logger.warn({ err }, 'logs: read failed, retrying'),
      });
      for await (const { fields } of lines) yield fields[1] ?? '';
    } finally {
      until.unlink();
    }
  }

  /**
   * Resolves once every service of the deployment settled: for up, running (the
   * config it asked for), exited, failed, blocked or stopped; for down/remove,
   * stopped or gone. A service taken over by a later deployment counts as settled.
   */
  async waitFor(deploymentId: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<DeploymentOutcome> {
    const d = await this.redis.hgetall(Keys.deployment(deploymentId));
    if (Object.keys(d).length === 0) {
      throw new MonocoreError('MC_ORCH_DEPLOYMENT_NOT_FOUND', `no deployment "${deploymentId}"`, { deploymentId });
    }
    const names = JSON.parse(d.services ?? '[]') as string[];
    const kind = d.kind ?? 'up';
    const timeoutMs = options.timeoutMs ?? 10 * 60_000;
    const until = performance.now() + timeoutMs;
    for (;;) {
      const recs = await this.state.getSummary(names);
      let settled = true;
      let ok = true;
      for (const n of names) {
        const r = recs.get(n);
        if (kind === 'up') {
          if (!r) {
            settled = false;
            continue;
          }
          if (r.deploymentId !== deploymentId) continue; // superseded
          const running = r.status === 'running' && r.runningHash === r.configHash;
          if (running) continue;
          // A one-shot service that ran and exited 0 (restart on-failure / no) succeeded.
          if (r.status === 'exited' && r.exitCode === 0 && r.runningHash === r.configHash) continue;
          if (r.desired === 'stopped' || (SETTLED_UP_STATUSES.includes(r.status) && r.status !== 'running')) {
            ok = false;
            continue;
          }
          settled = false;
        } else {
          if (!r) continue; // removed
          if (kind === 'remove') settled = false;
          else if (r.status !== 'stopped' && r.status !== 'exited' && r.status !== 'failed' && r.status !== 'blocked') {
            settled = false;
          }
        }
      }
      if (settled) {
        return {
          deploymentId,
          ok,
          services: names.map((n) => recs.get(n)).filter((r): r is ServiceRecord => !!r).map(toServiceStatus),
        };
      }
      if (options.signal?.aborted) throw new MonocoreError('MC_ORCH_TIMEOUT', `waiting for ${deploymentId} was aborted`);
      if (performance.now() > until) {
        throw new MonocoreError('MC_ORCH_TIMEOUT', `deployment ${deploymentId} did not settle within ${timeoutMs} ms`, {
          deploymentId,
          services: names.map((n) => recs.get(n)).filter((r): r is ServiceRecord => !!r).map(toServiceStatus),
        });
      }
      await sleep(100, options.signal);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeController.abort();
    await this.#deployQueue.close().catch(() => undefined);
    await this.#clusterMetrics?.close();
    if (this.#ownsConnection) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Dependents before what they depend on; ties by name. */
function stopOrder(names: readonly string[], dependents: ReadonlyMap<string, string[]>): string[] {
  const remaining = new Map(names.map((n) => [n, new Set(dependents.get(n) ?? [])]));
  const out: string[] = [];
  while (remaining.size > 0) {
    const ready = [...remaining].filter(([, s]) => s.size === 0).map(([n]) => n).sort();
    if (ready.length === 0) {
      out.push(...[...remaining.keys()].sort());
      break;
    }
    for (const n of ready) {
      out.push(n);
      remaining.delete(n);
    }
    for (const s of remaining.values()) for (const n of ready) s.delete(n);
  }
  return out;
}

/**
 * A signal that aborts when any of `signals` does, and `unlink()` to take its listeners off
 * them again. Every events()/logs() follow links to the orchestrator's close signal, which lives
 * as long as the API: listeners left on it would pile up, one per request, for the process's
 * life (AbortSignal.any leaves the cleanup to the garbage collector).
 */
function linkedSignal(...signals: Array<AbortSignal | undefined>): { signal: AbortSignal; unlink: () => void } {
  const c = new AbortController();
  const abort = (): void => c.abort();
  const linked = signals.filter((s): s is AbortSignal => s !== undefined);
  for (const s of linked) {
    if (s.aborted) c.abort();
    else s.addEventListener('abort', abort, { once: true });
  }
  return { signal: c.signal, unlink: () => linked.forEach((s) => s.removeEventListener('abort', abort)) };
}
