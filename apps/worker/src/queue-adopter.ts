import { DelayedError, Queue, Worker, type Job, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { QUEUE_PREFIX, QueueNames, type HostRegistry, type PullJobResult } from '@monocore/engine';

/**
 * Jobs already queued for a host that died (`host-<id>`, `pull-<id>`) would
 * never run, and their flow parents would wait for ever. The worker whose
 * reaper declared the host dead adopts its queues until they drain or the host
 * comes back: start jobs complete as `moved` (the service was rescheduled with
 * a new epoch, or waits for capacity — either way not here), stops settle the
 * state (no VM is left), and pulls complete empty (their start job is moved).
 * Parents then run and check their dependencies' real state before booting.
 *
 * A host can come back (a worker restarted with the same id) before a tick sees
 * it: from then on its queues hold its own new jobs — a reboot of its services, a
 * service the reaper placed on it again. Every adopted job first checks that its
 * host is still dead; if the host answers, the job goes back to its queue (delayed
 * briefly) for the host itself. Completing it as `moved` would lose the start for
 * good: the chaos soak found services left `pending` with no job that way.
 */
export class QueueAdopter {
  readonly #adopted = new Map<string, { workers: Worker[]; queues: Queue[]; idleTicks: number }>();

  constructor(
    private readonly redis: Redis,
    private readonly hosts: HostRegistry,
    private readonly hostProcessor: Processor,
    private readonly logger: Logger,
  ) {}

  adopt(host: string): void {
    if (this.#adopted.has(host)) return;
    const common = { connection: this.redis, prefix: QUEUE_PREFIX, autorun: true } as const;
    const handBackIfAlive = async (job: Job, token: string | undefined): Promise<void> => {
      if (!(await this.hosts.isAlive(host))) return;
      this.logger.info({ job: job.id, host }, 'host is back: leaving its job to it');
      await job.moveToDelayed(Date.now() + 500, token);
      throw new DelayedError();
    };
    const orphanedJob: Processor = async (job, token) => {
      await handBackIfAlive(job, token);
      return this.hostProcessor(job, token);
    };
    const emptyPull = async (job: Job, token?: string): Promise<PullJobResult> => {
      await handBackIfAlive(job, token);
      this.logger.info({ job: job.id, host }, 'completing a pull queued for a lost host');
      return { reference: '', manifestDigest: '', rootfs: '' };
    };
    const workers = [
      new Worker(QueueNames.host(host), orphanedJob, { ...common, concurrency: 8 }),
      new Worker(QueueNames.pull(host), emptyPull, { ...common, concurrency: 8 }),
    ];
    for (const w of workers) w.on('error', (err) => this.logger.debug({ err: err.message, queue: w.name }, 'adopted queue error'));
    const queues = [QueueNames.host(host), QueueNames.pull(host)].map((n) => {
      const q = new Queue(n, { connection: this.redis, prefix: QUEUE_PREFIX });
      q.on('error', () => undefined);
      return q;
    });
    this.#adopted.set(host, { workers, queues, idleTicks: 0 });
    this.logger.warn({ host }, 'adopted the queues of a lost host');
  }

  /** Release adopted queues whose host is back or that stayed empty for a few ticks. */
  async tick(): Promise<void> {
    for (const [host, a] of this.#adopted) {
      let done = await this.hosts.isAlive(host);
      if (!done) {
        const counts = await Promise.all(a.queues.map((q) => q.getJobCounts('wait', 'delayed', 'waiting-children', 'active', 'prioritized')));
        const pending = counts.reduce((n, c) => n + Object.values(c).reduce((x, y) => x + y, 0), 0);
        a.idleTicks = pending === 0 ? a.idleTicks + 1 : 0;
        done = a.idleTicks >= 5;
      }
      if (done) await this.release(host);
    }
  }

  async release(host: string): Promise<void> {
    const a = this.#adopted.get(host);
    if (!a) return;
    this.#adopted.delete(host);
    await Promise.all(a.workers.map((w) => w.close().catch(() => undefined)));
    await Promise.all(a.queues.map((q) => q.close().catch(() => undefined)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.#adopted.keys()].map((h) => this.release(h)));
  }
}
