import { FlowProducer, Queue, type FlowJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MonocoreError } from '../errors/index.js';
import { HostRegistry } from '../state/host-registry.js';
import { SandboxStore } from '../sandbox/sandbox-store.js';
import { Keys, sandboxOfSubject } from '../state/keys.js';
import type { ServiceRecord } from '../state/service-record.js';
import { StateStore } from '../state/state-store.js';
import { placeServices, type PlacementRequest } from './placement.js';
import { QUEUE_PREFIX, QueueNames, type PullJobData, type StartJobData } from './queues.js';

/** Statuses of a service that was (or was about to be) on a host that died. */
const LOSABLE = new Set(['pending', 'pulling', 'starting', 'running', 'restarting', 'exited', 'blocked', 'lost']);
/** Statuses of a service a start job is moving towards running. */
const COMING_UP = new Set(['pending', 'pulling', 'starting']);

export interface ReaperOptions {
  redis: Redis;
  logger: Logger;
  /** A host is reaped once its heartbeat key has been missing this long (as seen by this reaper). */
  graceMs: number;
  startAttempts: number;
  startBackoffMs: number;
  /**
   * A service coming up on a live host (pending, pulling, starting) with no start job for it in
   * that host's queue for this long is started again elsewhere (default 60 s; see #jobless).
   */
  joblessMs?: number;
}

export interface ReapResult {
  /** Hosts declared dead in this round (their queues may still hold jobs: see the worker's adopter). */
  reaped: string[];
  lost: string[];
  /** Sandboxes of the reaped hosts, now `lost` (they are never rescheduled). */
  lostSandboxes: string[];
  rescheduled: Array<{ service: string; host: string; epoch: number }>;
  unplaced: string[];
}

/**
 * Finds hosts whose heartbeat expired, marks their services `lost` and
 * reschedules them on live hosts. Every worker runs one; a per-host lock and
 * the fenced (epoch-checked) transitions make concurrent reapers harmless.
 *
 * Never twice at once: the new host bumps the service's epoch and can only
 * take the lease once the dead host's lease has expired (acquire-lease-2.lua);
 * a host that was only partitioned has killed its VM by then, because it could
 * not renew the lease within its fence time (the worker's HostLiveness;
 * docs/ORCHESTRATION.md "Fencing").
 */
export class HostReaper {
  readonly state: StateStore;
  readonly hosts: HostRegistry;
  readonly sandboxes: SandboxStore;
  readonly #missingSince = new Map<string, number>();
  /** `name@epoch` of lost services → when this reaper first saw them lost (see #stranded). */
  readonly #lostSince = new Map<string, number>();
  /** `name@epoch@status` of services coming up → when this reaper first saw them so (see #jobless). */
  readonly #comingUpSince = new Map<string, number>();
  readonly #flows: FlowProducer;

  constructor(readonly options: ReaperOptions) {
    this.state = new StateStore(options.redis);
    this.hosts = new HostRegistry(options.redis);
    this.sandboxes = new SandboxStore(options.redis);
    this.#flows = new FlowProducer({ connection: options.redis, prefix: QUEUE_PREFIX });
    this.#flows.on('error', (err: Error) => options.logger.debug({ err: err.message }, 'reaper flow producer error'));
  }

  /** Enqueue a start outside any request flow (reschedule, recovery): it pulls first, then polls its dependencies. */
  async enqueueStandaloneStart(rec: ServiceRecord, host: string, epoch: number, tag: string): Promise<void> {
    await this.#flows.add(standaloneStartFlow(rec, host, epoch, tag, this.options));
  }

  /**
   * Graceful shutdown of a host: its services are marked lost and placed on
   * the other live hosts right away (not after the heartbeat TTL). Call after
   * the host unregistered and stopped its VMs.
   */
  async handBack(host: string, names: readonly string[]): Promise<ReapResult> {
    const result: ReapResult = { reaped: [], lost: [], lostSandboxes: [], rescheduled: [], unplaced: [] };
    const recs = await this.state.getSummary([...names]);
    const toPlace: ServiceRecord[] = [];
    for (const r of recs.values()) {
      if (r.host !== host || r.desired !== 'running') continue;
      const ok = await this.state.tryTransition(r.name, { status: 'lost' }, { host, epoch: r.epoch, detail: `host ${host} shut down`, clear: ['pid'] });
      if (ok === null) continue;
      result.lost.push(r.name);
      toPlace.push({ ...r, status: 'lost' });
    }
    if (toPlace.length > 0) await this.#reschedule(toPlace, result);
    return result;
  }

  async reapOnce(now = Date.now()): Promise<ReapResult> {
    const result: ReapResult = { reaped: [], lost: [], lostSandboxes: [], rescheduled: [], unplaced: [] };
    const all = await this.hosts.list();
    const dead: string[] = [];
    for (const h of all) {
      if (h.alive) {
        this.#missingSince.delete(h.id);
        continue;
      }
      const since = this.#missingSince.get(h.id) ?? now;
      this.#missingSince.set(h.id, since);
      if (now - since >= this.options.graceMs) dead.push(h.id);
    }
    const records = await this.state.listSummary();
    const stranded = [...this.#stranded(records, all, now), ...(await this.#jobless(records, all, now))];
    if (dead.length === 0 && stranded.length === 0) return result;
    const release = await this.hosts.lock('reap', 30_000);
    if (!release) return result;
    try {
      const toPlace: ServiceRecord[] = [...stranded];
      for (const host of dead) {
        const mine = records.filter((r) => r.host === host && r.desired === 'running' && LOSABLE.has(r.status));
        for (const r of mine) {
          if (r.status !== 'lost') {
            const ok = await this.state.tryTransition(
              r.name,
              { status: 'lost' },
              { host, epoch: r.epoch, detail: `host ${host} stopped heartbeating`, clear: ['pid'] },
            );
            if (ok === null) continue;
            result.lost.push(r.name);
          }
          if (!toPlace.some((t) => t.name === r.name)) toPlace.push({ ...r, status: 'lost' });
        }
        // A stop in flight there: no VM is left, so the service is stopped.
        for (const r of records) {
          if (r.host === host && r.desired === 'stopped' && (LOSABLE.has(r.status) || r.status === 'stopping')) {
            await this.state.tryTransition(r.name, { status: 'stopped' }, { host, epoch: r.epoch, detail: `host ${host} lost`, clear: ['pid'] });
          }
        }
        // Sandboxes are never moved: their state died with the host.
        const allocations = all.find((h) => h.id === host)?.allocations ?? {};
        for (const key of Object.keys(allocations)) {
          const sb = sandboxOfSubject(key);
          if (sb === undefined) continue;
          const ok = await this.sandboxes.tryTransition(sb, host, 'lost', {
            host,
            detail: `its worker host "${host}" stopped heartbeating`,
            fields: { code: 'MC_SANDBOX_LOST' },
          });
          if (ok !== null) result.lostSandboxes.push(sb);
        }
        // Everything that was stopped or failed there just loses its host.
        await this.hosts.unregister(host);
        result.reaped.push(host);
        this.#missingSince.delete(host);
        await this.state.emit({ kind: 'host', host, detail: `host ${host} lost (heartbeat expired)` });
        this.options.logger.warn({ host, lost: mine.map((r) => r.name) }, 'host lost');
      }
      if (toPlace.length > 0) await this.#reschedule(toPlace, result);
    } finally {
      await release();
    }
    return result;
  }

  /**
   * Lost services nobody is moving: their host was already unregistered (they waited for
   * capacity), or they have stayed `lost` at one epoch for a whole grace period. `lost` is
   * only ever set by a reaper that reschedules right after; when that round ended early
   * (no capacity, Redis gone mid-way, the reaper's worker killed) and the host then came back
   * under the same id, no later round would touch them (chaos soak seed 339019956: two
   * services `lost` on a live host for minutes, with no job anywhere).
   */
  #stranded(records: readonly ServiceRecord[], hosts: ReadonlyArray<{ id: string }>, now: number): ServiceRecord[] {
    const stranded: ServiceRecord[] = [];
    const seen = new Set<string>();
    for (const r of records) {
      if (r.status !== 'lost' || r.desired !== 'running') continue;
      const key = `${r.name}@${r.epoch}`;
      seen.add(key);
      const since = this.#lostSince.get(key) ?? now;
      this.#lostSince.set(key, since);
      const hostGone = !r.host || !hosts.some((h) => h.id === r.host);
      if (hostGone || now - since >= this.options.graceMs) stranded.push(r);
    }
    for (const key of this.#lostSince.keys()) if (!seen.has(key)) this.#lostSince.delete(key);
    return stranded;
  }

  /**
   * Services that should be coming up on a live host but have had no start job there for
   * `joblessMs`: the job that would have moved them on is gone (a Redis killed and restarted
   * from its append-only file loses its last second of writes; chaos soak: services `pending`
   * for minutes with nothing queued). A service with any job left (waiting for its pull or
   * dependencies, delayed for a retry, running) is never touched.
   */
  async #jobless(records: readonly ServiceRecord[], hosts: ReadonlyArray<{ id: string; alive: boolean }>, now: number): Promise<ServiceRecord[]> {
    const seen = new Set<string>();
    const overdue: ServiceRecord[] = [];
    for (const r of records) {
      if (r.desired !== 'running' || !COMING_UP.has(r.status) || !r.host || !hosts.some((h) => h.id === r.host && h.alive)) continue;
      const key = `${r.name}@${r.epoch}@${r.status}`;
      seen.add(key);
      const since = this.#comingUpSince.get(key) ?? now;
      this.#comingUpSince.set(key, since);
      if (now - since >= (this.options.joblessMs ?? 60_000)) overdue.push(r);
    }
    for (const key of this.#comingUpSince.keys()) if (!seen.has(key)) this.#comingUpSince.delete(key);
    if (overdue.length === 0) return [];
    const jobless: ServiceRecord[] = [];
    for (const host of new Set(overdue.map((r) => r.host!))) {
      const queue = new Queue(QueueNames.host(host), { connection: this.options.redis, prefix: QUEUE_PREFIX });
      try {
        const jobs = await queue.getJobs(['active', 'waiting', 'waiting-children', 'delayed', 'prioritized']);
        const queued = new Set(jobs.map((j) => (j?.data as Partial<StartJobData> | undefined)?.service));
        for (const r of overdue) {
          if (r.host !== host || queued.has(r.name)) continue;
          this.options.logger.warn({ service: r.name, host, status: r.status, epoch: r.epoch }, 'no start job left for a service coming up: starting it again');
          jobless.push(r);
        }
      } finally {
        await queue.close().catch(() => undefined);
      }
    }
    return jobless;
  }

  async #reschedule(services: ServiceRecord[], result: ReapResult): Promise<void> {
    const alive = await this.hosts.alive();
    if (alive.length === 0) {
      result.unplaced.push(...services.map((s) => s.name));
      return;
    }
    const aliveIds = new Set(alive.map((h) => h.id));
    const groupHosts = new Map<string, string>();
    const moving = new Set(services.map((s) => s.name));
    for (const r of await this.state.listSummary()) {
      if (moving.has(r.name) || !r.group || !r.host || !aliveIds.has(r.host) || r.desired !== 'running') continue;
      groupHosts.set(r.group, r.host);
    }
    const requests: PlacementRequest[] = services.map((s) => {
      const req: PlacementRequest = { name: s.name, cpus: s.cpus, ramMib: s.ramMib };
      if (s.group) req.group = s.group;
      return req;
    });
    let placement: Map<string, string>;
    try {
      placement = placeServices(requests, alive, groupHosts);
    } catch (err) {
      if (err instanceof MonocoreError && err.code === 'MC_ORCH_NO_CAPACITY') {
        this.options.logger.warn({ err: err.message }, 'lost services wait for capacity');
        result.unplaced.push(...services.map((s) => s.name));
        return;
      }
      throw err;
    }
    for (const s of services) {
      const host = placement.get(s.name)!;
      const epoch = s.epoch + 1;
      // Fenced move: only if nobody reassigned it meanwhile.
      const moved = await this.options.redis.eval(
        `if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
           redis.call('HSET', KEYS[1], 'host', ARGV[2], 'epoch', ARGV[3]) return 1 end return 0`,
        1,
        Keys.service(s.name),
        String(s.epoch),
        host,
        String(epoch),
      );
      if (Number(moved) !== 1) continue;
      // A stranded service's old host may be alive again: its slot there is free now.
      if (s.host && s.host !== host) await this.hosts.release(s.host, s.name);
      await this.hosts.allocate(host, s.name, s.cpus, s.ramMib);
      await this.state.tryTransition(s.name, { status: 'pending' }, { epoch, detail: `rescheduled on ${host}` });
      await this.#flows.add(standaloneStartFlow(s, host, epoch, `e${epoch}`, this.options));
      result.rescheduled.push({ service: s.name, host, epoch });
    }
  }

  async close(): Promise<void> {
    await this.#flows.close().catch(() => undefined);
  }
}

/** A start job with its pull as child, outside any request flow; it gates on its dependencies by polling. */
export function standaloneStartFlow(
  rec: ServiceRecord,
  host: string,
  epoch: number,
  tag: string,
  tuning: { startAttempts: number; startBackoffMs: number },
): FlowJob {
  const deploymentId = rec.deploymentId ?? 'standalone';
  const data: StartJobData = { deploymentId, service: rec.name, host, epoch, awaitedBy: [], pollDependencies: true };
  const jobId = `${deploymentId}.restart.${rec.name}.${tag}`;
  const children: FlowJob[] = [];
  if (rec.image) {
    const pull: PullJobData = { image: rec.image, deploymentId, service: rec.name };
    children.push({
      name: 'pull',
      queueName: QueueNames.pull(host),
      data: pull,
      opts: {
        jobId: `${deploymentId}.pull.${rec.name}.${tag}`,
        attempts: 3,
        backoff: { type: 'exponential', delay: 2000 },
        ignoreDependencyOnFailure: true,
        removeOnComplete: { age: 24 * 3600 },
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    });
  }
  return {
    name: 'start',
    queueName: QueueNames.host(host),
    data,
    opts: {
      jobId,
      attempts: tuning.startAttempts,
      backoff: { type: 'exponential', delay: tuning.startBackoffMs },
      removeOnComplete: { age: 24 * 3600 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
    children,
  };
}
