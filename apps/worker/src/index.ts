import { mkdir } from 'node:fs/promises';
import { cpus as osCpus, totalmem } from 'node:os';
import { FlowProducer, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import {
  DEFAULT_JOB_TUNING,
  HostReaper,
  HostRegistry,
  ImageStore,
  LogRetention,
  MetricsRecorder,
  MonocoreError,
  MonocoreHome,
  QUEUE_PREFIX,
  QemuBackend,
  type QemuBackendOptions,
  DEFAULT_SPARES,
  QueueNames,
  RelayServer,
  SandboxStore,
  StateStore,
  VERSION,
  cleanupEgressOrphans,
  cleanupOrphans,
  leaseTiming,
  sandboxOfSubject,
  type HostInfo,
  type JobTuning,
  type LogRetentionPolicy,
} from '@monocore/engine';
import { startPuller, type Puller } from '@monocore/puller';
import { HostLiveness } from './host-liveness.js';
import { QueueAdopter } from './queue-adopter.js';
import { reclaimFenced, recoverAfterRestart } from './reboot-here.js';
import { removeStrayServiceFiles } from './stray-service-files.js';
import { VmUsageSampler } from './vm-usage-sampler.js';
import { createAwaitProcessor } from './processors/await-dependency.js';
import { createDeployProcessor } from './processors/deployment.js';
import { createRemoveProcessor } from './processors/remove-service.js';
import { createStartProcessor } from './processors/start-service.js';
import { createStopProcessor } from './processors/stop-service.js';
import { createSandboxExpireProcessor } from './processors/expire-sandbox.js';
import { createSandboxStartProcessor } from './processors/start-sandbox.js';
import { relayHost } from './relay-host.js';
import { SandboxHost } from './sandbox-host.js';
import { Supervisor, type ServiceBackend } from './supervisor.js';
import { keyedMutex, promoteGates, queueCache, type WorkerContext } from './worker-context.js';
import { awaitRedis } from './await-redis.js';

export { Supervisor, type ServiceBackend } from './supervisor.js';
export { HostLiveness } from './host-liveness.js';
export { QueueAdopter } from './queue-adopter.js';
export { workerHostId } from './host-id.js';
export { workerOptionsFromEnv, type WorkerEnvOptions } from './worker-env.js';

/**
 * vCPUs offered per host CPU by default. A vCPU is a host thread, so CPUs can
 * be overcommitted (idle guests cost little); RAM is the hard limit.
 */
export const CPU_OVERCOMMIT = 4;

export interface StartWorkerOptions {
  /** An ioredis connection (must have maxRetriesPerRequest: null); not closed by close(). */
  connection?: Redis;
  redisUrl?: string;
  /** This host's id (queues `host-<id>`, `pull-<id>`). */
  hostId: string;
  /** MONOCORE_HOME of this host (images, service layers, logs, pid files). */
  home: string | MonocoreHome;
  /** Capacity offered to the scheduler (default: CPU_OVERCOMMIT × this machine's cpus, and its RAM). */
  cpus?: number;
  ramMib?: number;
  /**
   * 'qemu' (default: QEMU microVMs), or an injected backend object (e.g. a libkrun
   * backend, or a benchmark's own backend: bench/support/instant-backend.mjs).
   */
  backend?: 'qemu' | ServiceBackend;
  /**
   * With the 'qemu' backend: how many sandbox shapes keep a restore made ahead of the request
   * (docs/SNAPSHOTS.md "Spares"; default DEFAULT_SPARES, 0 = off; MONOCORE_SPARES).
   */
  spares?: number;
  logger?: Logger;
  /**
   * The one liveness setting (default DEFAULT_LEASE_MS = 8 s): the lease TTL. The heartbeat
   * period, the fence time (a VM whose lease could not be renewed for that long is killed)
   * and the failover time all derive from it — leaseTiming(), docs/ORCHESTRATION.md "Fencing".
   */
  leaseMs?: number;
  /** First restart delay after an unexpected exit (default 1000 ms, doubling, capped at restartBackoffMaxMs = 60 s). */
  restartBackoffMs?: number;
  restartBackoffMaxMs?: number;
  /** Uptime after which the restart budget (max_restarts) starts over (default 10 minutes). */
  restartResetMs?: number;
  bootTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** How long ended sandboxes stay readable (default 1 hour). */
  sandboxRetentionMs?: number;
  /** Concurrent start/stop jobs on this host (default 4). */
  concurrency?: number;
  /** Run the puller for this host in this process (default true). */
  puller?: boolean;
  retention?: LogRetentionPolicy;
  jobs?: Partial<JobTuning>;
}

export interface MonocoreWorker {
  readonly hostId: string;
  readonly supervisor: Supervisor;
  readonly sandboxes: SandboxHost;
  readonly relay: RelayServer;
  readonly liveness: HostLiveness;
  /**
   * Graceful: stop taking jobs, let running jobs finish, stop every VM, and
   * (handBack, default true) hand the services to the other hosts at once.
   */
  close(options?: { handBack?: boolean }): Promise<void>;
}

/**
 * The composition root of a worker host: connects, prepares the backend,
 * wires the supervisor (VMs), HostLiveness (heartbeat, leases, fencing), the
 * reaper of other hosts and the BullMQ workers, then recovers what a previous
 * process of this host left.
 */
export async function startWorker(options: StartWorkerOptions): Promise<MonocoreWorker> {
  const hostId = options.hostId;
  if (!/^[A-Za-z0-9_-]+$/.test(hostId)) throw new MonocoreError('MC_USAGE', `invalid host id "${hostId}" (letters, digits, _ and - only)`, { hostId });
  const logger = options.logger ?? pino({ level: process.env.MONOCORE_LOG_LEVEL ?? 'info' }).child({ host: hostId });
  const home = options.home instanceof MonocoreHome ? options.home : new MonocoreHome(options.home);
  await Promise.all([home.runDir, home.logDir, home.servicesDir].map((d) => mkdir(d, { recursive: true })));
  const timing = leaseTiming(options.leaseMs);
  const tuning: JobTuning = { ...DEFAULT_JOB_TUNING, ...options.jobs };
  const { backend, accel, detail: backendDetail } = await prepareBackend(options.backend, home, logger, {
    spares: options.spares ?? DEFAULT_SPARES,
    // A spare's guest RAM is resident while it waits: it takes the room this host offers, never
    // more. (Called on VM starts only, once `info` and `usage` below exist.)
    spareRoomMib: () => info.ramMib - usage().ramMib,
  });
  const { redis, owned } = connect(options, logger);
  // Liveness has a connection of its own that fails fast while Redis is away (the fence
  // deadline, not a queue of retries, decides what happens then).
  const livenessConn = redis.duplicate({ enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
  livenessConn.on('error', (err: Error) => logger.debug({ err: err.message }, 'liveness connection error'));
  await awaitRedis('connect', async () => {
    // A failed first connect() leaves ioredis reconnecting in the background: wait for it then.
    if (livenessConn.status === 'wait' || livenessConn.status === 'end') await livenessConn.connect();
    else if (livenessConn.status !== 'ready') throw new Error(`liveness connection ${livenessConn.status}`);
  }, logger);

  const info: HostInfo = {
    id: hostId,
    cpus: options.cpus ?? osCpus().length * CPU_OVERCOMMIT,
    ramMib: options.ramMib ?? Math.floor(totalmem() / 1024 / 1024),
    backends: [backend.name],
    backendDetail,
    // What the backend really uses after its boot probe (a KVM that failed the probe reports tcg).
    accel,
    version: VERSION,
    // Fixed for this process: with the pid it names this worker's incarnation (relay callers notice a restart by it).
    startedAt: new Date().toISOString(),
  };
  const worker = `${process.pid}@${info.startedAt}`;
  const state = new StateStore(redis);
  const metrics = new MetricsRecorder(redis, { labels: { host: hostId }, logger });
  const queues = queueCache(redis);
  const reaper = new HostReaper({
    redis,
    logger,
    graceMs: timing.reapGraceMs,
    startAttempts: tuning.startAttempts,
    startBackoffMs: tuning.startBackoffMs,
  });
  const liveness: HostLiveness = new HostLiveness({
    info,
    redis: livenessConn,
    timing,
    logger,
    usage: () => {
      const used = usage();
      return {
        freeCpus: info.cpus - used.cpus,
        freeRamMib: info.ramMib - used.ramMib,
        ...(backend instanceof QemuBackend ? { spares: backend.spareUsage } : {}),
      };
    },
    // A lease subject is a service name or `sandbox:<id>`.
    fence: (name, epoch) => {
      const sb = sandboxOfSubject(name);
      if (sb === undefined) supervisor.fence(name, epoch);
      else sandboxes.fence(sb, epoch);
    },
    reclaim: (name, epoch) => {
      const sb = sandboxOfSubject(name);
      return sb === undefined ? reclaimFenced(ctx, reaper, name, epoch) : sandboxes.reclaimFenced(sb, epoch);
    },
  });
  const supervisor: Supervisor = new Supervisor({
    hostId,
    home,
    backend,
    state,
    redis,
    logger,
    retention: options.retention ?? LogRetention.withMaxAgeWeeks(1),
    restartBackoffMs: options.restartBackoffMs ?? 1000,
    restartBackoffMaxMs: options.restartBackoffMaxMs ?? 60_000,
    restartResetMs: options.restartResetMs ?? 10 * 60_000,
    ...(options.bootTimeoutMs !== undefined ? { bootTimeoutMs: options.bootTimeoutMs } : {}),
    stopTimeoutMs: options.stopTimeoutMs ?? 10_000,
    mayRun: (name, epoch) => liveness.holds(name, epoch),
    onRelease: (name, epoch) => liveness.release(name, epoch),
    metrics,
  });
  const sandboxStore = new SandboxStore(redis, options.sandboxRetentionMs);
  const sandboxes: SandboxHost = new SandboxHost({
    hostId,
    home,
    backend,
    store: sandboxStore,
    logger,
    queue: (name) => queues.get(name),
    mayRun: (subject, epoch) => liveness.holds(subject, epoch),
    release: (subject, epoch) => liveness.release(subject, epoch),
    acquire: (subject, epoch) => liveness.acquire(subject, epoch),
    imageOf: async (rec) => {
      const [record] = await new ImageStore(home).get(rec.imageDigest || rec.image);
      if (!record) throw new MonocoreError('MC_OCI_IMAGE_NOT_FOUND', `image ${rec.image} is not present on host ${hostId}`, { image: rec.image, host: hostId });
      return { rootfs: record.rootfs, config: record.config };
    },
    ...(options.bootTimeoutMs !== undefined ? { bootTimeoutMs: options.bootTimeoutMs } : {}),
  });
  const usage = (): { cpus: number; ramMib: number } => {
    const a = supervisor.usage();
    const b = sandboxes.usage();
    return { cpus: a.cpus + b.cpus, ramMib: a.ramMib + b.ramMib };
  };
  const flows = new FlowProducer({ connection: redis, prefix: QUEUE_PREFIX });
  flows.on('error', (err: Error) => logger.debug({ err: err.message }, 'flow producer error'));
  const ctx: WorkerContext = {
    hostId,
    home,
    redis,
    state,
    hosts: new HostRegistry(redis),
    images: new ImageStore(home),
    supervisor,
    sandboxes,
    sandboxStore,
    relay: undefined as unknown as RelayServer, // set below, before any job runs
    worker,
    usage,
    liveness,
    logger,
    metrics,
    timing,
    capacity: { cpus: info.cpus, ramMib: info.ramMib },
    tuning,
    queue: (name) => queues.get(name),
    flows,
    serial: keyedMutex(),
    promoteGates: (ids) => promoteGates({ queue: (n) => queues.get(n), logger }, ids),
  };

  await awaitRedis('register the host', () => liveness.start(), logger);
  await recoverAfterRestart(ctx, reaper);
  const lostSandboxes = await sandboxes.recoverAfterRestart(await sandboxStore.list());
  if (lostSandboxes.length > 0) logger.warn({ sandboxes: lostSandboxes }, 'sandboxes of the previous worker process are lost');
  const relay = await RelayServer.start({ redis, hostId, host: relayHost(ctx), logger });
  ctx.relay = relay;

  const hostProcessor = hostJobProcessor(ctx);
  const adopter = new QueueAdopter(redis, ctx.hosts, hostProcessor, logger);
  const common = { connection: redis, prefix: QUEUE_PREFIX, autorun: true } as const;
  const workers = [
    new Worker(QueueNames.host(hostId), hostProcessor, { ...common, concurrency: options.concurrency ?? 4 }),
    new Worker(QueueNames.gate, createAwaitProcessor(ctx), { ...common, concurrency: 50 }),
    new Worker(QueueNames.deploy, createDeployProcessor(ctx), { ...common, concurrency: 8 }),
  ];
  for (const w of workers) {
    w.on('error', (err) => logger.warn({ err: err.message, queue: w.name }, 'queue worker error'));
    w.on('failed', (job, err) => logger.info({ job: job?.id, queue: w.name, err: err.message }, 'job failed'));
  }
  const puller = options.puller === false ? undefined : await startHostPuller(redis, hostId, home, state, logger);
  await Promise.all(workers.map((w) => w.waitUntilReady()));

  // Housekeeping on the heartbeat's period: reap dead hosts (and adopt their queues), delete the
  // files of services that left this host, sample VM usage.
  const sampler = new VmUsageSampler();
  let housekeeping = false;
  const housekeepingTimer = setInterval(() => {
    if (housekeeping) return;
    housekeeping = true;
    (async () => {
      const r = await reaper.reapOnce();
      for (const h of r.reaped) if (h !== hostId) adopter.adopt(h);
      if (r.lost.length || r.rescheduled.length) logger.warn(r, 'rescheduled services of lost hosts');
      await adopter.tick();
      await removeStrayServiceFiles(ctx);
      const pids = supervisor.pids();
      sampler.retain(new Set(pids.map((p) => p.pid)));
      for (const { name, pid } of pids) {
        const m = sampler.sample(pid);
        if (m) await state.update(name, { cpu_percent: m.cpuPercent, memory_bytes: m.memoryBytes });
      }
    })()
      .catch((err) => logger.warn({ err: (err as Error).message }, 'housekeeping failed'))
      .finally(() => {
        housekeeping = false;
      });
  }, timing.renewEveryMs);

  let closed = false;
  return {
    hostId,
    supervisor,
    sandboxes,
    relay,
    liveness,
    async close(closeOptions: { handBack?: boolean } = {}) {
      if (closed) return;
      closed = true;
      clearInterval(housekeepingTimer);
      // Stop taking jobs; jobs in progress finish (a boot completes, then is stopped below).
      await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
      // No start will take a spare now: give their memory back.
      if (backend instanceof QemuBackend) await backend.close();
      await adopter.close();
      if (puller) await puller.close().catch(() => undefined);
      await relay.close();
      await sandboxes.stopAll();
      const held = await supervisor.stopAll();
      await liveness.stop();
      await ctx.hosts.unregister(hostId).catch(() => undefined);
      if (closeOptions.handBack !== false && held.length > 0) {
        const r = await reaper.handBack(hostId, held).catch((err) => {
          logger.warn({ err: (err as Error).message }, 'hand back failed');
          return undefined;
        });
        if (r) logger.info(r, 'handed services back');
      }
      await reaper.close();
      await flows.close().catch(() => undefined);
      await queues.close();
      await livenessConn.quit().catch(() => livenessConn.disconnect());
      if (owned) await owned.quit().catch(() => owned.disconnect());
    },
  };
}

function connect(options: StartWorkerOptions, logger: Logger): { redis: Redis; owned?: Redis } {
  if (options.connection) return { redis: options.connection };
  if (!options.redisUrl) throw new MonocoreError('MC_USAGE', 'startWorker: pass connection or redisUrl');
  const owned = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  // Reconnects by itself (ioredis); errors while Redis is away are expected, not fatal.
  owned.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
  return { redis: owned, owned };
}

/** The host's backend, ready, with the acceleration it uses and why it is what it is (HostInfo: GET /hosts, status). */
async function prepareBackend(
  choice: StartWorkerOptions['backend'],
  home: MonocoreHome,
  logger: Logger,
  spareOptions: Pick<QemuBackendOptions, 'spares' | 'spareRoomMib'>,
): Promise<{ backend: ServiceBackend; accel: string; detail: string }> {
  const backend = choice === undefined || choice === 'qemu' ? new QemuBackend({ home, logger, ...spareOptions }) : choice;
  const availability = await backend.available();
  if (!availability.available) {
    throw new MonocoreError('MC_VM_BACKEND_UNAVAILABLE', `backend ${backend.name} is unavailable: ${availability.reason}`, { backend: backend.name });
  }
  if (backend.name === 'qemu') {
    const cleaned = cleanupOrphans(home);
    if (cleaned.killed.length > 0) logger.warn({ killed: cleaned.killed }, 'killed VMs left by a previous worker');
    if (process.getuid?.() === 0) {
      const stale = await cleanupEgressOrphans().catch(() => []);
      if (stale.length > 0) logger.warn({ namespaces: stale }, 'removed egress namespaces left by a previous worker');
    }
  }
  const why = choice === undefined ? 'worker hosts run qemu' : choice === 'qemu' ? 'qemu requested' : 'backend injected by the caller';
  const detail = `${backend.name} (${availability.accel}), ${why}${availability.detail ? `: ${availability.detail}` : ''}`;
  logger.info({ backend: backend.name, detail }, 'hypervisor backend ready');
  return { backend, accel: availability.accel, detail };
}

/** start/stop/remove of the services placed on this host, one at a time per service (BullMQ is at-least-once). */
function hostJobProcessor(ctx: WorkerContext): (job: Job, token?: string) => Promise<unknown> {
  const start = createStartProcessor(ctx);
  const stop = createStopProcessor(ctx);
  const remove = createRemoveProcessor(ctx);
  const sandboxStart = createSandboxStartProcessor(ctx);
  const sandboxExpire = createSandboxExpireProcessor(ctx);
  return async (job, token) => {
    const sandbox = (job.data as { sandbox?: unknown }).sandbox;
    if (typeof sandbox === 'string') {
      if (job.name === 'sandbox-start') return ctx.serial(`sandbox:${sandbox}`, () => sandboxStart(job, token));
      if (job.name === 'sandbox-expire') return ctx.serial(`sandbox:${sandbox}`, () => sandboxExpire(job, token));
    }
    const service = (job.data as { service?: unknown }).service;
    const key = typeof service === 'string' ? service : `job:${job.id}`;
    if (job.name === 'start') return ctx.serial(key, () => start(job, token));
    if (job.name === 'stop') return ctx.serial(key, () => stop(job));
    if (job.name === 'remove') return ctx.serial(key, () => remove(job));
    throw new Error(`unknown job ${job.name}`);
  };
}

/** This host's puller in this process; a pull in progress shows as `pulling` on the service. */
async function startHostPuller(redis: Redis, hostId: string, home: MonocoreHome, state: StateStore, logger: Logger): Promise<Puller> {
  const puller = await startPuller({ connection: redis, hostId, home });
  puller.worker.on('error', (err) => logger.warn({ err: err.message, queue: puller.queueName }, 'pull worker error'));
  puller.worker.on('active', (job: Job) => {
    const d = job.data as { service?: string };
    if (d.service) void state.tryTransition(d.service, { status: 'pulling' }, { host: hostId });
  });
  return puller;
}
