import { readFileSync } from 'node:fs';
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
  LIVE_STATUSES,
  LogRetention,
  MonocoreHome,
  QUEUE_PREFIX,
  QemuBackend,
  QueueNames,
  StateStore,
  cleanupEgressOrphans,
  cleanupOrphans,
  type JobTuning,
  type LogRetentionPolicy,
} from '@monocore/engine';
import { startPuller, type Puller } from '@monocore/puller';
import { QueueAdopter } from './queue-adopter.js';
import { createAwaitProcessor } from './processors/await-dependency.js';
import { createDeployProcessor } from './processors/deployment.js';
import { createRemoveProcessor } from './processors/remove-service.js';
import { createStartProcessor } from './processors/start-service.js';
import { createStopProcessor } from './processors/stop-service.js';
import { Supervisor, type ServiceBackend } from './supervisor.js';
import { keyedMutex, promoteGates, queueCache, type WorkerContext } from './worker-context.js';

export { Supervisor, type ServiceBackend } from './supervisor.js';

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
  logger?: Logger;
  /** Heartbeat period (default 2000 ms); the host and its leases expire after hostTtlMs (default 3 heartbeats + 1 s). */
  heartbeatMs?: number;
  hostTtlMs?: number;
  /** First restart delay after an unexpected exit (default 1000 ms, doubling, capped at restartBackoffMaxMs = 60 s). */
  restartBackoffMs?: number;
  restartBackoffMaxMs?: number;
  /** Uptime after which the restart budget (max_restarts) starts over (default 10 minutes). */
  restartResetMs?: number;
  bootTimeoutMs?: number;
  stopTimeoutMs?: number;
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
  /**
   * Graceful: stop taking jobs, let running jobs finish, stop every VM, and
   * (handBack, default true) hand the services to the other hosts at once.
   */
  close(options?: { handBack?: boolean }): Promise<void>;
}

export async function startWorker(options: StartWorkerOptions): Promise<MonocoreWorker> {
  const logger = options.logger ?? pino({ level: process.env.MONOCORE_LOG_LEVEL ?? 'info' }).child({ host: options.hostId });
  const hostId = options.hostId;
  if (!/^[A-Za-z0-9_-]+$/.test(hostId)) throw new Error(`invalid host id "${hostId}" (letters, digits, _ and - only)`);
  const home = options.home instanceof MonocoreHome ? options.home : new MonocoreHome(options.home);
  await Promise.all([home.runDir, home.logDir, home.servicesDir].map((d) => mkdir(d, { recursive: true })));
  let owned: Redis | undefined;
  let redis = options.connection;
  if (!redis) {
    if (!options.redisUrl) throw new Error('startWorker: pass connection or redisUrl');
    owned = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    redis = owned;
    // Reconnects by itself (ioredis); errors while Redis is away are expected, not fatal.
    owned.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
  }
  const heartbeatMs = options.heartbeatMs ?? 2000;
  const ttlMs = options.hostTtlMs ?? heartbeatMs * 3 + 1000;
  const tuning: JobTuning = { ...DEFAULT_JOB_TUNING, ...options.jobs };

  let backend: ServiceBackend;
  if (options.backend === undefined || options.backend === 'qemu') backend = new QemuBackend({ home });
  else backend = options.backend;
  const availability = await backend.available();
  if (!availability.available) throw new Error(`backend ${backend.name} is unavailable: ${availability.reason}`);
  if (backend.name === 'qemu') {
    const cleaned = cleanupOrphans(home);
    if (cleaned.killed.length > 0) logger.warn({ killed: cleaned.killed }, 'killed VMs left by a previous worker');
    if (process.getuid?.() === 0) {
      const stale = await cleanupEgressOrphans().catch(() => []);
      if (stale.length > 0) logger.warn({ namespaces: stale }, 'removed egress namespaces left by a previous worker');
    }
  }

  const state = new StateStore(redis);
  const hosts = new HostRegistry(redis);
  const queues = queueCache(redis);
  const reaper = new HostReaper({
    redis,
    logger,
    graceMs: heartbeatMs * 2,
    startAttempts: tuning.startAttempts,
    startBackoffMs: tuning.startBackoffMs,
  });
  const supervisor = new Supervisor({
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
    onRelease: async (name, epoch) => {
      await state.releaseLease(name, hostId, epoch);
    },
  });
  const info = {
    id: hostId,
    cpus: options.cpus ?? osCpus().length * CPU_OVERCOMMIT,
    ramMib: options.ramMib ?? Math.floor(totalmem() / 1024 / 1024),
    backends: [backend.name],
  };
  const flows = new FlowProducer({ connection: redis, prefix: QUEUE_PREFIX });
  flows.on('error', (err: Error) => logger.debug({ err: err.message }, 'flow producer error'));
  const ctx: WorkerContext = {
    hostId,
    home,
    redis,
    state,
    hosts,
    images: new ImageStore(home),
    supervisor,
    logger,
    leaseTtlMs: ttlMs,
    capacity: { cpus: info.cpus, ramMib: info.ramMib },
    tuning,
    queue: (name) => queues.get(name),
    flows,
    serial: keyedMutex(),
    promoteGates: (ids) => promoteGates({ queue: (n) => queues.get(n), logger }, ids),
  };

  await hosts.register(info, ttlMs);
  await recover(ctx, reaper);

  const start = createStartProcessor(ctx);
  const stop = createStopProcessor(ctx);
  const remove = createRemoveProcessor(ctx);
  const common = { connection: redis, prefix: QUEUE_PREFIX, autorun: true } as const;
  const hostProcessor = async (job: Job, token?: string): Promise<unknown> => {
    const service = (job.data as { service?: unknown }).service;
    const key = typeof service === 'string' ? service : `job:${job.id}`;
    if (job.name === 'start') return ctx.serial(key, () => start(job, token));
    if (job.name === 'stop') return ctx.serial(key, () => stop(job));
    if (job.name === 'remove') return ctx.serial(key, () => remove(job));
    throw new Error(`unknown job ${job.name}`);
  };
  const adopter = new QueueAdopter(redis, hosts, hostProcessor, logger);
  const workers = [
    new Worker(
      QueueNames.host(hostId),
      hostProcessor,
      { ...common, concurrency: options.concurrency ?? 4 },
    ),
    new Worker(QueueNames.gate, createAwaitProcessor(ctx), { ...common, concurrency: 50 }),
    new Worker(QueueNames.deploy, createDeployProcessor(ctx), { ...common, concurrency: 8 }),
  ];
  for (const w of workers) {
    w.on('error', (err) => logger.warn({ err: err.message, queue: w.name }, 'queue worker error'));
    w.on('failed', (job, err) => logger.info({ job: job?.id, queue: w.name, err: err.message }, 'job failed'));
  }
  let puller: Puller | undefined;
  if (options.puller !== false) {
    puller = await startPuller({ connection: redis, hostId, home });
    puller.worker.on('error', (err) => logger.warn({ err: err.message, queue: puller?.queueName }, 'pull worker error'));
    // A pull in progress shows as `pulling` on the service.
    puller.worker.on('active', (job: Job) => {
      const d = job.data as { service?: string };
      if (d.service) void state.tryTransition(d.service, { status: 'pulling' }, { host: hostId });
    });
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));

  const cpuSamples = new Map<number, { ticks: number; at: number }>();
  const beat = async (): Promise<void> => {
    const used = supervisor.usage();
    const wasAlive = await hosts.heartbeat(hostId, ttlMs, { freeCpus: info.cpus - used.cpus, freeRamMib: info.ramMib - used.ramMib });
    if (!wasAlive) {
      logger.warn('heartbeat key had expired (Redis restart or a long pause): registering again');
      await hosts.register(info, ttlMs);
    }
    for (const h of supervisor.held()) {
      if (!(await state.renewLease(h.name, hostId, h.epoch, ttlMs))) {
        // Expired (e.g. Redis was away longer than the TTL) but still ours: take it again.
        const again = await state.acquireLease(h.name, hostId, h.epoch, ttlMs);
        if (again !== 'held') {
          logger.warn({ service: h.name, lease: again }, 'lost the lease (rescheduled elsewhere): killing the local VM');
          await supervisor.kill(h.name);
          continue;
        }
      }
      if (h.pid && h.pid > 0) {
        const m = sampleProc(h.pid, cpuSamples);
        if (m) await state.update(h.name, { cpu_percent: m.cpuPercent, memory_bytes: m.memoryBytes });
      }
    }
  };
  let beating = false;
  const beatTimer = setInterval(() => {
    if (beating) return;
    beating = true;
    beat()
      .then(() => reaper.reapOnce())
      .then(async (r) => {
        for (const h of r.reaped) if (h !== hostId) adopter.adopt(h);
        if (r.lost.length || r.rescheduled.length) logger.warn(r, 'rescheduled services of lost hosts');
        await adopter.tick();
      })
      .catch((err) => logger.warn({ err: (err as Error).message }, 'heartbeat failed'))
      .finally(() => {
        beating = false;
      });
  }, heartbeatMs);

  let closed = false;
  return {
    hostId,
    supervisor,
    async close(closeOptions: { handBack?: boolean } = {}) {
      if (closed) return;
      closed = true;
      clearInterval(beatTimer);
      // Stop taking jobs; jobs in progress finish (a boot completes, then is stopped below).
      await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
      await adopter.close();
      if (puller) await puller.close().catch(() => undefined);
      const held = await supervisor.stopAll();
      await hosts.unregister(hostId).catch(() => undefined);
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
      if (owned) await owned.quit().catch(() => owned?.disconnect());
    },
  };
}

/**
 * After a restart on the same host: the VMs of the previous process died with
 * it (parent-death signal; cleanupOrphans() kills any survivor), so services
 * still assigned here are booted again under the same lease epoch.
 */
async function recover(ctx: WorkerContext, reaper: HostReaper): Promise<void> {
  const recs = await ctx.state.listSummary();
  for (const r of recs) {
    if (r.host !== ctx.hostId || r.desired !== 'running') continue;
    if ((!LIVE_STATUSES.includes(r.status) && r.status !== 'lost') || r.status === 'pulling') continue;
    const ok = await ctx.state.tryTransition(r.name, { status: 'pending' }, {
      host: ctx.hostId,
      epoch: r.epoch,
      detail: 'worker restarted: booting again',
      clear: ['pid'],
    });
    if (ok === null) continue;
    await reaper.enqueueStandaloneStart({ ...r, status: 'pending' }, ctx.hostId, r.epoch, `r${Date.now().toString(36)}`);
    ctx.logger.info({ service: r.name }, 'recovering service after worker restart');
  }
}

function sampleProc(pid: number, samples: Map<number, { ticks: number; at: number }>): { cpuPercent: number; memoryBytes: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]); // utime + stime
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    const now = Date.now();
    const prev = samples.get(pid);
    samples.set(pid, { ticks, at: now });
    const cpuPercent = prev && now > prev.at ? Math.round(((ticks - prev.ticks) / 100 / ((now - prev.at) / 1000)) * 1000) / 10 : 0;
    return { cpuPercent, memoryBytes: rss ? Number(rss[1]) * 1024 : 0 };
  } catch {
    return undefined;
  }
}
