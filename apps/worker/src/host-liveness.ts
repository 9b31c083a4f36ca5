import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { HostRegistry, StateStore, type HostInfo, type LeaseTiming } from '@monocore/engine';

/** A lease this host holds, as this host sees it. */
type LeasePhase =
  /** Renewed in time: the VM may run. */
  | 'held'
  /** Not renewed in time (or lost): the VM was killed; Redis decides, once reachable, whether it boots again here. */
  | 'fenced';

interface Lease {
  epoch: number;
  phase: LeasePhase;
  /** Monotonic time at which the last renewal that succeeded was SENT (Redis's TTL starts no earlier). */
  sentAt: number;
  fencedAt?: number;
}

const NEXT: Record<LeasePhase, readonly LeasePhase[]> = { held: ['fenced'], fenced: ['held'] };

function move(name: string, lease: Lease, to: LeasePhase): void {
  if (!NEXT[lease.phase].includes(to)) throw new Error(`lease of "${name}": invalid transition ${lease.phase} → ${to}`);
  lease.phase = to;
}

export interface HostLivenessOptions {
  info: HostInfo;
  /** A connection of its own (closed by stop()), so renewals never queue behind other traffic. */
  redis: Redis;
  timing: LeaseTiming;
  logger: Logger;
  /** Free capacity reported with each heartbeat. */
  usage(): { freeCpus: number; freeRamMib: number };
  /**
   * Kill the service's VM now, without waiting for Redis: its lease may expire
   * before this host can renew it. Keep the local record of the service; do
   * not release the lease.
   */
  fence(name: string, epoch: number, why: string): void;
  /**
   * Redis answers again after `name` was fenced: find out whether the service
   * is still this host's and boot it again, or let it go. Resolves when decided.
   */
  reclaim(name: string, epoch: number): Promise<void>;
  /** Monotonic clock in ms (tests inject one). */
  now?: () => number;
}

/**
 * The host's liveness and the fencing decision, in one place.
 *
 * Every `renewEveryMs` it renews the lease of every service this host runs and
 * its heartbeat key; every `fenceCheckMs` — on a timer that needs no Redis — it
 * kills each VM whose lease was last renewed (by send time) `fenceAfterMs` ago.
 * Redis counts a lease's TTL from when it processed the renewal, which is never
 * before this host sent it, so the VM is dead `marginMs` before any other host
 * can take the lease (`leaseTiming()`): whether Redis is down, slow, or
 * unreachable from this host only. When Redis answers again, fenced services
 * are handed to `reclaim`.
 */
export class HostLiveness {
  readonly #leases = new Map<string, Lease>();
  readonly #state: StateStore;
  readonly #hosts: HostRegistry;
  readonly #now: () => number;
  #renewTimer?: NodeJS.Timeout;
  #fenceTimer?: NodeJS.Timeout;
  #ticking = false;
  #stopped = false;
  #lastBeatAt = 0;

  constructor(private readonly options: HostLivenessOptions) {
    this.#state = new StateStore(options.redis);
    this.#hosts = new HostRegistry(options.redis);
    this.#now = options.now ?? (() => performance.now());
  }

  get hostId(): string {
    return this.options.info.id;
  }

  /** Register the host, then renew and check on timers. */
  async start(): Promise<void> {
    await this.#hosts.register(this.options.info, this.options.timing.hostTtlMs);
    this.#lastBeatAt = this.#now();
    this.#renewTimer = setInterval(() => void this.tick(), this.options.timing.renewEveryMs);
    this.#fenceTimer = setInterval(() => this.checkDeadlines(), this.options.timing.fenceCheckMs);
  }

  /**
   * Take the lease that allows this host to boot `name` (acquire-lease-2.lua)
   * and track it from the moment the request was sent. Call right before booting.
   */
  async acquire(name: string, epoch: number): Promise<'held' | 'stale' | { holder: string; pttlMs: number }> {
    const sentAt = this.#now();
    const r = await this.#state.acquireLease(name, this.hostId, epoch, this.options.timing.leaseMs);
    if (r === 'held') this.#leases.set(name, { epoch, phase: 'held', sentAt });
    return r;
  }

  /** Whether this host may (still) run `name` under `epoch`: checked before every boot and restart. */
  holds(name: string, epoch: number): boolean {
    const l = this.#leases.get(name);
    return l !== undefined && l.epoch === epoch && l.phase === 'held' && this.#now() - l.sentAt < this.options.timing.fenceAfterMs;
  }

  /** The service left this host for good: stop tracking and drop the lease in Redis (best effort). */
  async release(name: string, epoch: number): Promise<void> {
    const l = this.#leases.get(name);
    if (l && l.epoch === epoch) this.#leases.delete(name);
    await this.#bounded(this.#state.releaseLease(name, this.hostId, epoch)).catch(() => undefined);
  }

  /** Names of the leases currently fenced (waiting for Redis to decide). */
  fenced(): string[] {
    return [...this.#leases].filter(([, l]) => l.phase === 'fenced').map(([n]) => n);
  }

  /** Milliseconds since the last heartbeat Redis confirmed (for status and logs). */
  sinceLastBeatMs(): number {
    return this.#now() - this.#lastBeatAt;
  }

  /** Kill every VM whose lease is past its local deadline. Runs on its own timer; never waits on Redis. */
  checkDeadlines(): void {
    const now = this.#now();
    for (const [name, l] of this.#leases) {
      if (l.phase !== 'held' || now - l.sentAt < this.options.timing.fenceAfterMs) continue;
      this.#fence(name, l, `lease not renewed for ${Math.round(now - l.sentAt)} ms (fence time ${this.options.timing.fenceAfterMs} ms)`);
    }
  }

  #fence(name: string, l: Lease, why: string): void {
    move(name, l, 'fenced');
    l.fencedAt = this.#now();
    this.options.logger.warn({ service: name, epoch: l.epoch, why }, 'fencing: killing the VM before its lease can expire');
    try {
      this.options.fence(name, l.epoch, why);
    } catch (err) {
      this.options.logger.error({ service: name, err }, 'fence callback failed');
    }
  }

  /** One renewal round: leases first (fencing), then the heartbeat, then fenced services. */
  async tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return;
    this.#ticking = true;
    try {
      await this.#renewAll();
      const beatSentAt = this.#now();
      const wasAlive = await this.#bounded(this.#hosts.heartbeat(this.hostId, this.options.timing.hostTtlMs, this.options.usage()));
      this.#lastBeatAt = beatSentAt;
      if (!wasAlive) {
        this.options.logger.warn('heartbeat key had expired (Redis restart, a partition or a long pause): registering again');
        await this.#bounded(this.#hosts.register(this.options.info, this.options.timing.hostTtlMs));
      }
      // Redis answers: decide what happens to fenced services.
      for (const name of this.fenced()) await this.#reclaim(name);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message, sinceLastBeatMs: Math.round(this.sinceLastBeatMs()) }, 'heartbeat failed');
    } finally {
      this.#ticking = false;
    }
  }

  async #renewAll(): Promise<void> {
    const sentAt = this.#now();
    const held = [...this.#leases].filter(([, l]) => l.phase === 'held');
    // Sent together (one round trip). A reply that arrives after the timeout still counts:
    // its send time is what bounds the lease, however late it answers.
    const rounds = held.map(([name, l]) =>
      this.#state.renewLease(name, this.hostId, l.epoch, this.options.timing.leaseMs).then(
        async (ok) => {
          if (this.#leases.get(name) !== l || l.phase !== 'held') return;
          if (ok) {
            l.sentAt = Math.max(l.sentAt, sentAt);
            return;
          }
          // Gone from Redis (e.g. the last second before a crash was lost), yet perhaps still ours:
          // the acquire script takes it again only if the service still names this host and epoch.
          const again = await this.#state.acquireLease(name, this.hostId, l.epoch, this.options.timing.leaseMs).catch(() => undefined);
          if (this.#leases.get(name) !== l || l.phase !== 'held') return;
          if (again === 'held') l.sentAt = Math.max(l.sentAt, sentAt);
          else this.#fence(name, l, `lease lost (${again === undefined ? 'Redis error' : again === 'stale' ? 'service reassigned' : `held by ${again.holder}`})`);
        },
        () => undefined, // a failed renewal just leaves the deadline where it was
      ),
    );
    await this.#bounded(Promise.all(rounds));
  }

  async #reclaim(name: string): Promise<void> {
    const l = this.#leases.get(name);
    if (!l || l.phase !== 'fenced') return;
    await this.#bounded(this.options.reclaim(name, l.epoch));
    if (this.#leases.get(name) === l) this.#leases.delete(name);
  }

  /** Wait at most renewTimeoutMs for a Redis call (the call itself may still complete later). */
  #bounded<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.options.timing.renewTimeoutMs} ms`)), this.options.timing.renewTimeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  /** Stop the timers (the caller stops its VMs and unregisters the host). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#renewTimer);
    clearInterval(this.#fenceTimer);
  }
}
