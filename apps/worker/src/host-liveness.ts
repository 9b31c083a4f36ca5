import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { HostRegistry, StateStore, type HostInfo, type HostUsage, type LeaseTiming } from '@monocore/engine';

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

/**
 * Renewal rounds that may wait for Redis at once. A round goes out every period
 * whatever earlier rounds still wait for (a late reply must not hold the next
 * renewal back); beyond this many unanswered ones (Redis unreachable, not just
 * slow), a round is skipped and logged rather than piling commands on the connection.
 */
export const MAX_ROUNDS_IN_FLIGHT = 4;

/**
 * Run `fn` once the replies that arrived before it have been read. A timer that fires
 * after an event-loop stall (timers run first in a turn) must not judge before the
 * socket reads already due: a renewal's reply that arrived during the stall. The
 * first setImmediate lets this turn's poll phase (socket reads) run; the second, the
 * next turn's, for a stall that came after this turn's poll (in an I/O callback, or
 * an immediate queued ahead of ours: the unpack's turns are immediates).
 */
function afterPendingIo(fn: () => void): void {
  setImmediate(() => setImmediate(fn));
}

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
  /** Free capacity (and spares) reported with each heartbeat. */
  usage(): HostUsage;
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
 * Every `renewEveryMs` it sends a round: the renewal of every lease this host
 * holds and its heartbeat, together, whatever earlier rounds still wait for (up to
 * MAX_ROUNDS_IN_FLIGHT). Every `fenceCheckMs` — on a timer that needs no Redis — it
 * kills each VM whose lease was last renewed (by send time) `fenceAfterMs` ago.
 * Redis counts a lease's TTL from when it processed the renewal, which is never
 * before this host sent it, so the VM is dead `marginMs` before any other host
 * can take the lease (`leaseTiming()`): whether Redis is down, slow, or
 * unreachable from this host only. When Redis answers again, fenced services
 * are handed to `reclaim`.
 *
 * A busy host (docs/ORCHESTRATION.md "A busy host"): the fence check and a round's
 * timeout decide only after the socket reads already due (afterPendingIo), so a
 * reply that arrived while the event loop was stalled counts before anything is
 * judged late.
 */
export class HostLiveness {
  readonly #leases = new Map<string, Lease>();
  readonly #state: StateStore;
  readonly #hosts: HostRegistry;
  readonly #now: () => number;
  #renewTimer?: NodeJS.Timeout;
  #fenceTimer?: NodeJS.Timeout;
  /** Rounds sent whose replies have not all arrived (given up or not). */
  #roundsInFlight = 0;
  /** Rounds skipped in a row because MAX_ROUNDS_IN_FLIGHT were unanswered. */
  #skipped = 0;
  /** Fenced leases whose reclaim is running. */
  readonly #reclaiming = new Set<string>();
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
    this.#fenceTimer = setInterval(
      () =>
        afterPendingIo(() => {
          if (!this.#stopped) this.checkDeadlines();
        }),
      this.options.timing.fenceCheckMs,
    );
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

  /**
   * One renewal round: every held lease and the heartbeat, sent together at once,
   * whatever earlier rounds still wait for. Resolves once Redis answered the round,
   * then handed fenced services to `reclaim`; or once it gave up after
   * renewTimeoutMs — its replies still count when they land: a renewal by its send
   * time, the heartbeat as a heartbeat. Never throws.
   */
  async tick(): Promise<void> {
    if (this.#stopped) return;
    if (this.#roundsInFlight >= MAX_ROUNDS_IN_FLIGHT) {
      if (this.#skipped++ === 0) {
        this.options.logger.warn(
          { roundsInFlight: this.#roundsInFlight, sinceLastBeatMs: Math.round(this.sinceLastBeatMs()) },
          `renewal round skipped: ${MAX_ROUNDS_IN_FLIGHT} earlier rounds still wait for Redis`,
        );
      }
      return;
    }
    if (this.#skipped > 0) {
      this.options.logger.info({ skipped: this.#skipped }, 'renewal rounds go out again');
      this.#skipped = 0;
    }
    this.#roundsInFlight++;
    const sentAt = this.#now();
    // Leases first (fencing), then the heartbeat: both are written before anything waits.
    const round = Promise.all([this.#renewAll(sentAt), this.#beat(sentAt)]);
    const answered = (): void => {
      this.#roundsInFlight--;
    };
    round.then(answered, answered);
    try {
      await this.#bounded(round);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message, sinceLastBeatMs: Math.round(this.sinceLastBeatMs()) }, 'heartbeat failed');
      return;
    }
    // Redis answers: decide what happens to fenced services.
    for (const name of this.fenced()) {
      try {
        await this.#reclaim(name);
      } catch (err) {
        this.options.logger.warn({ service: name, err: (err as Error).message }, 'reclaim of a fenced service did not finish in time (it goes on)');
      }
    }
  }

  /** Renews every held lease; settles when every reply arrived. Never rejects. */
  #renewAll(sentAt: number): Promise<void> {
    const held = [...this.#leases].filter(([, l]) => l.phase === 'held');
    // A reply that arrives after the round gave up still counts: its send time is what
    // bounds the lease, however late it answers.
    const renewals = held.map(([name, l]) =>
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
    return Promise.all(renewals).then(() => undefined);
  }

  /** The host's heartbeat (one round trip), registering again if the key had expired. */
  async #beat(sentAt: number): Promise<void> {
    const wasAlive = await this.#hosts.heartbeat(this.hostId, this.options.timing.hostTtlMs, this.options.usage());
    this.#lastBeatAt = Math.max(this.#lastBeatAt, sentAt);
    if (!wasAlive) {
      this.options.logger.warn('heartbeat key had expired (Redis restart, a partition or a long pause): registering again');
      await this.#hosts.register(this.options.info, this.options.timing.hostTtlMs);
    }
  }

  /** Hands a fenced lease to `reclaim` (once at a time); forgets it once decided. Waits at most renewTimeoutMs. */
  async #reclaim(name: string): Promise<void> {
    const l = this.#leases.get(name);
    if (!l || l.phase !== 'fenced' || this.#reclaiming.has(name)) return;
    this.#reclaiming.add(name);
    const decided = this.options.reclaim(name, l.epoch).then(
      () => {
        if (this.#leases.get(name) === l) this.#leases.delete(name);
      },
      (err: unknown) => {
        this.options.logger.warn({ service: name, err: (err as Error).message }, 'reclaim of a fenced service failed (tried again when Redis answers)');
      },
    );
    void decided.finally(() => this.#reclaiming.delete(name));
    await this.#bounded(decided);
  }

  /**
   * Wait at most renewTimeoutMs for a Redis call (the call itself may still complete
   * later). When the timer fires, the verdict waits for the socket reads already due
   * (afterPendingIo): after an event-loop stall the timer and the reply are due at once,
   * and the reply must win.
   */
  #bounded<T>(p: Promise<T>): Promise<T> {
    const ms = this.options.timing.renewTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(
        () =>
          afterPendingIo(() => {
            if (settled) return;
            settled = true;
            reject(new Error(`Redis did not answer within ${ms} ms`));
          }),
        ms,
      );
      p.then(
        (v) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(err as Error);
        },
      );
    });
  }

  /** Stop the timers (the caller stops its VMs and unregisters the host). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#renewTimer);
    clearInterval(this.#fenceTimer);
  }
}
