import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { FlowProducer, type FlowJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { CreateSandboxRequestSchema, Sandbox } from '@monocore/api-schemas';
import type { z } from 'zod';
import { ErrorCodes } from '../errors/codes.js';
import { MonocoreError, isMonocoreError } from '../errors/index.js';
import type { RegistryPolicyData } from '../oci/registry-policy.js';
import { placeServices } from '../orchestration/placement.js';
import {
  JobIds,
  QUEUE_PREFIX,
  QueueNames,
  type PullJobData,
  type SandboxExpireJobData,
  type SandboxStartJobData,
} from '../orchestration/queues.js';
import type { RelayCall, RelayClient } from '../relay/relay-client.js';
import { describeTarget, type RelayOp, type RelayTarget } from '../relay/relay-protocol.js';
import { HostRegistry } from '../state/host-registry.js';
import { Keys } from '../state/keys.js';
import { sandboxNetwork } from './sandbox-network.js';
import { toSandbox, type SandboxRecord } from './sandbox-record.js';
import { isEndedSandboxStatus, type SandboxStatus } from './sandbox-state.js';
import { SandboxChanges } from './sandbox-changes.js';
import { SandboxStore, notFound } from './sandbox-store.js';

/** A create request after validation (defaults applied). */
export type CreateSandboxInput = z.output<typeof CreateSandboxRequestSchema>;

export interface SandboxControlOptions {
  /** The API's shared connection. */
  redis: Redis;
  relay: RelayClient;
  logger: Logger;
  /** How long ended sandboxes stay readable (default 1 hour). */
  retentionMs?: number;
  /** Pull job attempts and backoff (tests shorten them). */
  pullAttempts?: number;
  pullBackoffMs?: number;
}

export interface CreateOptions {
  /** A REST caller's registry policy: the puller checks every address it connects to. */
  registryPolicy?: RegistryPolicyData;
  /** Resolve once it runs (default true); false: right after it was recorded and queued. */
  wait?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The sandbox operations the REST layer calls (apps/api routes/sandboxes.ts, exec.ts, files.ts). */
export interface SandboxApi {
  create(input: CreateSandboxInput, options?: CreateOptions): Promise<Sandbox>;
  get(id: string): Promise<Sandbox>;
  list(filter?: { status?: readonly SandboxStatus[] }): Promise<Sandbox[]>;
  /** Kills the VM and deletes its disk; resolves with the final record. Idempotent. */
  delete(id: string): Promise<Sandbox>;
  /** Saves a running sandbox's VM to its host's disk and ends its QEMU (status paused). Idempotent. */
  pause(id: string): Promise<Sandbox>;
  /** Continues a paused sandbox on its host (status running). Idempotent. */
  resume(id: string): Promise<Sandbox>;
  /** New sandboxes continuing a running one's memory, processes and files (docs/SNAPSHOTS.md "Fork"). */
  fork(id: string, count: number): Promise<Sandbox[]>;
  /** Starts an exec or file call on a running sandbox or service (MC_SANDBOX_NOT_RUNNING, MC_ORCH_SERVICE_NOT_RUNNING…). */
  call(target: RelayTarget, op: RelayOp): Promise<RelayCall>;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const KEEP = { age: 24 * 3600, count: 50_000 };
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 50_000 };

export function newSandboxId(): string {
  const bytes = randomBytes(12);
  let s = 'sb-';
  for (const b of bytes) s += ALPHABET[b % ALPHABET.length];
  return s;
}

/**
 * Sandboxes as the API sees them: placement (the same capacity-aware
 * placement as services), the record, the BullMQ flow that pulls the image on
 * the chosen host and boots the VM, the delayed expiry jobs, and calls to the
 * VM through the relay. Holds no state of its own.
 */
export class SandboxControl implements SandboxApi {
  readonly store: SandboxStore;
  readonly hosts: HostRegistry;
  readonly #o: SandboxControlOptions;
  readonly #flows: FlowProducer;
  readonly #changes: SandboxChanges;

  constructor(options: SandboxControlOptions) {
    this.#o = options;
    this.store = new SandboxStore(options.redis, options.retentionMs);
    this.hosts = new HostRegistry(options.redis);
    this.#changes = new SandboxChanges(options.redis, options.logger);
    this.#changes.start();
    this.#flows = new FlowProducer({ connection: options.redis, prefix: QUEUE_PREFIX });
    this.#flows.on('error', (err: Error) => options.logger.warn({ err: err.message }, 'sandbox flow producer error'));
  }

  async create(input: CreateSandboxInput, options: CreateOptions = {}): Promise<Sandbox> {
    const net = sandboxNetwork(input.network); // a bad allow-list is a 400 before anything is placed or stored
    const id = newSandboxId();
    const now = Date.now();
    const rec: SandboxRecord = {
      id,
      status: 'creating',
      host: '',
      epoch: 1,
      image: input.image,
      cpus: input.cpus,
      ramMib: input.ram,
      diskMib: input.disk,
      env: input.env ?? {},
      network: net.network,
      ...(net.allow !== undefined ? { allow: net.allow } : {}),
      timeoutS: input.timeout_s,
      createdAt: now,
      lastActivityAt: now,
    };
    if (input.workdir !== undefined) rec.workdir = input.workdir;
    if (input.user !== undefined) rec.user = input.user;
    if (input.idle_timeout_s !== undefined) rec.idleTimeoutS = input.idle_timeout_s;
    if (input.cold) rec.cold = true;
    if (input.on_idle === 'pause') rec.onIdle = 'pause';

    // Placed and recorded under the placement lock, so two creates (or an up) never count the same free RAM.
    await this.hosts.withLock('placement', 10_000, async () => {
      const alive = await this.hosts.alive();
      const placement = placeServices([{ name: `sandbox:${id}`, cpus: rec.cpus, ramMib: rec.ramMib }], alive);
      rec.host = placement.get(`sandbox:${id}`)!;
      await this.store.create(rec);
    });
    await this.#flows.addBulk(this.#jobs(rec, options.registryPolicy));
    this.#o.logger.info({ sandbox: id, host: rec.host, image: rec.image }, 'sandbox queued');
    if (options.wait === false) return toSandbox(rec);
    return this.#waitRunning(id, options.timeoutMs ?? 10 * 60_000, options.signal);
  }

  /** The start flow (its pull as child, on the same host) and the delayed expiry jobs, added atomically. */
  #jobs(rec: SandboxRecord, registryPolicy?: RegistryPolicyData): FlowJob[] {
    const host = rec.host;
    const pull: PullJobData = { image: rec.image };
    if (registryPolicy) pull.registryPolicy = registryPolicy;
    const start: SandboxStartJobData = { sandbox: rec.id, host, epoch: rec.epoch };
    const jobs: FlowJob[] = [
      {
        name: 'sandbox-start',
        queueName: QueueNames.host(host),
        data: start,
        opts: {
          jobId: JobIds.sandboxStart(rec.id),
          attempts: 2,
          backoff: { type: 'exponential', delay: 1000 },
          ignoreDependencyOnFailure: true,
          removeOnComplete: KEEP,
          removeOnFail: KEEP_FAILED,
        },
        children: [
          {
            name: 'pull',
            queueName: QueueNames.pull(host),
            data: pull,
            opts: {
              jobId: JobIds.sandboxPull(rec.id),
              attempts: this.#o.pullAttempts ?? 3,
              backoff: { type: 'exponential', delay: this.#o.pullBackoffMs ?? 2000 },
              ignoreDependencyOnFailure: true,
              removeOnComplete: KEEP,
              removeOnFail: KEEP_FAILED,
            },
          },
        ],
      },
      ...this.#expiryJobs(rec),
    ];
    return jobs;
  }

  /** The delayed jobs that end (or pause) a sandbox: its maximum life, counted from creation, and its idle time. */
  #expiryJobs(rec: SandboxRecord): FlowJob[] {
    const host = rec.host;
    const expire = (why: 'timeout' | 'idle', delayMs: number): FlowJob => ({
      name: 'sandbox-expire',
      queueName: QueueNames.host(host),
      data: { sandbox: rec.id, host, why } satisfies SandboxExpireJobData,
      opts: { jobId: JobIds.sandboxExpire(rec.id, why), delay: delayMs, attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: KEEP, removeOnFail: KEEP_FAILED },
    });
    const jobs = [expire('timeout', Math.max(0, rec.createdAt + rec.timeoutS * 1000 - Date.now()))];
    if (rec.idleTimeoutS !== undefined) jobs.push(expire('idle', rec.idleTimeoutS * 1000));
    return jobs;
  }

  /** Until it runs (resolve) or ended without running (reject with why: the pull's code, lost…). */
  async #waitRunning(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Sandbox> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      // Registered before the read: a change recorded meanwhile still wakes us. The timeout
      // bounds a wait the feed cannot end (Redis restarting) and checks the host's liveness.
      const change = this.#changes.next(id, 1000, signal);
      try {
        const rec = await this.#read(id);
        if (!rec) throw notFound(id);
        if (rec.status === 'running') return toSandbox(rec);
        if (rec.status !== 'creating') throw endedError(rec, 'before it was ready');
        if (signal?.aborted) throw new MonocoreError('MC_ORCH_TIMEOUT', `stopped waiting for sandbox ${id}: the caller went away (it is still being created)`, { sandbox: id });
        if (performance.now() > until) {
          throw new MonocoreError('MC_ORCH_TIMEOUT', `sandbox ${id} was not ready within ${timeoutMs} ms (it is still being created; see GET /sandboxes/${id})`, { sandbox: id });
        }
        await change.changed;
      } finally {
        change.cancel();
      }
    }
  }

  /**
   * The record, with one check added: a live sandbox whose host stopped
   * heartbeating is lost (its VM died with its worker, or is fenced); recorded
   * here so a caller never sees it `running` on a dead host, even when no
   * other worker is left to reap that host.
   */
  async #read(id: string): Promise<SandboxRecord | null> {
    const rec = await this.store.get(id);
    if (!rec || isEndedSandboxStatus(rec.status) || !rec.host) return rec;
    if (await this.hosts.isAlive(rec.host)) return rec;
    return this.#markLost(rec, `its worker host "${rec.host}" stopped heartbeating`);
  }

  async #markLost(rec: SandboxRecord, why: string): Promise<SandboxRecord> {
    await this.store.tryTransition(rec.id, rec.host, 'lost', { host: rec.host, detail: why, fields: { code: 'MC_SANDBOX_LOST' } });
    return (await this.store.get(rec.id)) ?? rec;
  }

  async get(id: string): Promise<Sandbox> {
    const rec = await this.#read(id);
    if (!rec) throw notFound(id);
    return toSandbox(rec);
  }

  async list(filter: { status?: readonly SandboxStatus[] } = {}): Promise<Sandbox[]> {
    let recs = await this.store.list();
    const live = [...new Set(recs.filter((r) => !isEndedSandboxStatus(r.status) && r.host).map((r) => r.host))];
    if (live.length > 0) {
      const pipe = this.#o.redis.pipeline();
      for (const h of live) pipe.exists(Keys.hostAlive(h));
      const res = (await pipe.exec()) ?? [];
      const dead = new Set(live.filter((_, i) => Number(res[i]?.[1] ?? 1) === 0));
      if (dead.size > 0) {
        recs = await Promise.all(recs.map((r) => (!isEndedSandboxStatus(r.status) && dead.has(r.host) ? this.#markLost(r, `its worker host "${r.host}" stopped heartbeating`) : r)));
      }
    }
    const only = filter.status && filter.status.length > 0 ? new Set(filter.status) : undefined;
    return recs.filter((r) => !only || only.has(r.status)).map(toSandbox);
  }

  async delete(id: string): Promise<Sandbox> {
    const rec = await this.#read(id);
    if (!rec) throw notFound(id);
    if (isEndedSandboxStatus(rec.status)) return toSandbox(rec);
    try {
      const call = await this.#o.relay.call({
        host: rec.host,
        target: { kind: 'sandbox', id },
        op: { op: 'delete' },
        hostLost: (why) => new MonocoreError('MC_SANDBOX_LOST', `sandbox ${id}: ${why}`, { sandbox: id }),
      });
      await call.result;
    } catch (err) {
      if (!isMonocoreError(err, 'MC_SANDBOX_LOST')) throw err;
      // Its worker is gone: nothing runs it any more (or its fence kills it: ending bumps the epoch).
      await this.store.tryTransition(id, rec.host, 'deleted', { detail: `deleted (its worker host "${rec.host}" was unreachable)` });
    }
    const after = await this.store.get(id);
    if (!after) throw notFound(id);
    return toSandbox(after);
  }

  async pause(id: string): Promise<Sandbox> {
    const rec = await this.#read(id);
    if (!rec) throw notFound(id);
    if (rec.status === 'paused') return toSandbox(rec);
    if (rec.status !== 'running') throw endedError(rec, '');
    await this.#hostCall(rec, 'pause');
    return this.get(id);
  }

  /**
   * Resume runs on the host that holds the paused VM, so that host must be up and have room
   * for it again (its capacity was released while paused): claimed under the placement lock
   * before the worker restores it, given back if the resume fails.
   */
  async resume(id: string): Promise<Sandbox> {
    const rec = await this.#read(id);
    if (!rec) throw notFound(id);
    if (rec.status === 'running') return toSandbox(rec);
    if (rec.status !== 'paused') {
      if (isEndedSandboxStatus(rec.status)) throw endedError(rec, '');
      throw new MonocoreError('MC_SANDBOX_NOT_PAUSED', `sandbox ${id} is ${rec.status}, not paused`, { sandbox: id, status: rec.status });
    }
    const subject = `sandbox:${id}`;
    await this.hosts.withLock('placement', 10_000, async () => {
      const host = (await this.hosts.alive()).find((h) => h.id === rec.host);
      if (!host) {
        throw new MonocoreError('MC_ORCH_NO_CAPACITY', `sandbox ${id} is paused on host "${rec.host}", which is not running now; resume it once that host is back`, { sandbox: id, host: rec.host });
      }
      placeServices([{ name: subject, cpus: rec.cpus, ramMib: rec.ramMib }], [host]); // throws MC_ORCH_NO_CAPACITY naming what is missing
      await this.hosts.allocate(rec.host, subject, rec.cpus, rec.ramMib);
    });
    try {
      await this.#hostCall(rec, 'resume');
    } catch (err) {
      const now = await this.store.get(id);
      if (now?.status !== 'running') await this.hosts.release(rec.host, subject);
      throw err;
    }
    return this.get(id);
  }

  /**
   * Fork: the children are recorded `creating` on the parent's host (the saved state and disk
   * copies stay on that host), which must have room for all of them; the parent's worker then
   * makes them. Each child has the parent's settings and lifetimes counted from now.
   */
  async fork(id: string, count: number): Promise<Sandbox[]> {
    const parent = await this.#read(id);
    if (!parent) throw notFound(id);
    if (parent.status !== 'running') throw endedError(parent, '');
    const now = Date.now();
    const children: SandboxRecord[] = [];
    for (let i = 0; i < count; i++) {
      const { reason: _r, code: _c, pid: _p, worker: _w, boot: _b, startedAt: _s, endedAt: _e, pausedAt: _pa, ...settings } = parent;
      children.push({ ...settings, id: newSandboxId(), status: 'creating', epoch: 1, createdAt: now, lastActivityAt: now, forkOf: id });
    }
    await this.hosts.withLock('placement', 10_000, async () => {
      const host = (await this.hosts.alive()).find((h) => h.id === parent.host);
      if (!host) throw new MonocoreError('MC_SANDBOX_LOST', `sandbox ${id}: its host "${parent.host}" is not running`, { sandbox: id });
      placeServices(children.map((c) => ({ name: `sandbox:${c.id}`, cpus: c.cpus, ramMib: c.ramMib })), [host]); // throws MC_ORCH_NO_CAPACITY
      for (const c of children) await this.store.create(c);
    });
    await this.#flows.addBulk(children.flatMap((c) => this.#expiryJobs(c)));
    try {
      await this.#hostCall(parent, { op: 'fork', children: children.map((c) => c.id) });
    } catch (err) {
      for (const c of children) {
        await this.store.tryTransition(c.id, c.host, 'failed', { detail: `fork of ${id} failed: ${(err as Error).message}`, fields: { code: 'MC_VM_SNAPSHOT_FAILED' } });
      }
      throw err;
    }
    return Promise.all(children.map((c) => this.get(c.id)));
  }

  /** A host-level relay call (pause, resume, fork) to the worker that holds the sandbox. */
  async #hostCall(rec: SandboxRecord, op: 'pause' | 'resume' | Extract<RelayOp, { op: 'fork' }>): Promise<void> {
    const call = await this.#o.relay.call({
      host: rec.host,
      target: { kind: 'sandbox', id: rec.id },
      op: typeof op === 'string' ? { op } : op,
      hostLost: (why) => new MonocoreError('MC_SANDBOX_LOST', `sandbox ${rec.id}: ${why}`, { sandbox: rec.id }),
    });
    await call.result;
  }

  async call(target: RelayTarget, op: RelayOp): Promise<RelayCall> {
    if (target.kind === 'sandbox') {
      const id = target.id;
      const [status, host, reason] = await this.#o.redis.hmget(Keys.sandbox(id), 'status', 'host', 'reason');
      if (status === null || status === undefined) throw notFound(id);
      if (status !== 'running' || !host) {
        const rec = await this.#read(id);
        if (!rec) throw notFound(id);
        throw endedError(rec, '');
      }
      return this.#o.relay.call({
        host,
        target,
        op,
        hostLost: (why) => {
          void this.store.tryTransition(id, host, 'lost', { host, detail: why, fields: { code: 'MC_SANDBOX_LOST' } }).catch(() => undefined);
          return new MonocoreError('MC_SANDBOX_LOST', `sandbox ${id} is lost: ${why}; its state is gone (sandboxes are not recreated)`, { sandbox: id, host, reason: reason ?? why });
        },
      });
    }
    const name = target.name;
    const [status, host] = await this.#o.redis.hmget(Keys.service(name), 'status', 'host');
    if (status === null || status === undefined) throw new MonocoreError('MC_ORCH_UNKNOWN_SERVICE', `no service "${name}" is recorded`, { service: name });
    if (status !== 'running' || !host) {
      throw new MonocoreError('MC_ORCH_SERVICE_NOT_RUNNING', `service "${name}" is ${status}, not running: nothing to exec into`, { service: name, status });
    }
    return this.#o.relay.call({
      host,
      target,
      op,
      hostLost: (why) => new MonocoreError('MC_EXEC_HOST_LOST', `${describeTarget(target)}: ${why} (the service is rescheduled; retry)`, { service: name, host }),
    });
  }

  async close(): Promise<void> {
    await this.#changes.close();
    await this.#flows.close().catch(() => undefined);
  }
}

/** The error of a call on (or a create of) a sandbox that is not running. */
function endedError(rec: SandboxRecord, when: string): MonocoreError {
  const details = { sandbox: rec.id, status: rec.status, ...(rec.reason ? { reason: rec.reason } : {}) };
  const why = rec.reason ? `: ${rec.reason}` : '';
  if (rec.status === 'lost') {
    return new MonocoreError('MC_SANDBOX_LOST', `sandbox ${rec.id} is lost${why}; its state is gone (sandboxes are not recreated)`, details);
  }
  if (rec.status === 'failed') {
    const code = rec.code && isCode(rec.code) ? rec.code : 'MC_ORCH_BOOT_FAILED';
    return new MonocoreError(code as never, `sandbox ${rec.id} could not be created${why}`, details);
  }
  if (rec.status === 'creating') return new MonocoreError('MC_SANDBOX_NOT_RUNNING', `sandbox ${rec.id} is still being created`, details);
  if (rec.status === 'paused') return new MonocoreError('MC_SANDBOX_NOT_RUNNING', `sandbox ${rec.id} is paused: resume it first (POST /sandboxes/${rec.id}/resume)`, details);
  return new MonocoreError('MC_SANDBOX_NOT_RUNNING', `sandbox ${rec.id} has ended (${rec.status})${when ? ` ${when}` : ''}${why}`, details);
}

function isCode(c: string): boolean {
  return Object.hasOwn(ErrorCodes, c);
}
