import { createHash } from 'node:crypto';
import type { VmSpec } from '../vm-spec.js';

/**
 * Restores made ahead of the request (docs/SNAPSHOTS.md "Spares"): after a sandbox starts from
 * its template, the backend restores the next VM of that shape at once and leaves it stopped
 * before `cont`; the next start of the same shape takes it. This file is the pool's policy only
 * (what may have a spare, how many, for how long); qemu-backend.ts makes and adopts them.
 */

/** What the pool needs of a spare. */
export interface Spare {
  /** Ends it (its QEMU is killed, what it allocated is freed); resolves once it is gone. */
  discard(): Promise<void>;
}

export interface SparePoolOptions {
  /** How many spares at most (one per shape); 0 turns spares off. */
  max: number;
  /** A spare nobody took in this long is discarded (its memory given back). */
  idleMs: number;
  /** Told why a spare could not be made (debug level: the start path never depends on one). */
  onError?: (err: unknown, key: string) => void;
  /**
   * Guest RAM (MiB) the host can still give VMs, spares not counted (the worker: its offered
   * capacity less its running VMs). A spare is made only if it fits beside those already held.
   * Absent: no limit.
   */
  roomMib?: () => number;
}

/** Default MONOCORE_SPARES for worker hosts: one spare, for the shape started last. */
export const DEFAULT_SPARES = 1;
/** Default idle life of a spare. */
export const DEFAULT_SPARE_IDLE_MS = 10 * 60_000;

/** MONOCORE_SPARES: a whole number ≥ 0 (0: off), or undefined when unset; anything else throws naming the variable. */
export function sparesFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const text = env.MONOCORE_SPARES;
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new Error(`MONOCORE_SPARES=${text} is not a whole number of spares in 0..64`);
  return n;
}

/**
 * The key a start must match to take a spare, or undefined when no spare can serve it:
 * sandboxes only (a service's or a command's QEMU keeps its own state dir in its command line,
 * which operators and the fencing checks read), with no network (NICs are wired at spawn), host
 * volumes or ports, and not forced cold. Everything else that shapes the VM is in the key; what
 * REFRESH gives each VM (hostname, env, workdir, user) is not.
 */
export function spareKey(spec: VmSpec, diskMib: number): string | undefined {
  if (spec.sandbox !== true || spec.coldBoot || spec.network.mode !== 'none' || spec.volumes.length > 0 || spec.ports.length > 0) return undefined;
  const shape = { rootfs: spec.rootfs, cpus: spec.cpus, ramMib: spec.ramMib, diskMib, rlimits: spec.rlimits ?? [] };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex');
}

interface Entry<S extends Spare> {
  /** undefined while it is being made. */
  spare?: S;
  ramMib: number;
  idle?: NodeJS.Timeout;
  lastUsed: number;
}

/**
 * At most `max` spares, one per key. A new key past the limit takes the place of the one used
 * least recently; a spare ends after `idleMs` untaken, when it dies (`forget`), or at close().
 */
export class SparePool<S extends Spare> {
  readonly #entries = new Map<string, Entry<S>>();
  /** Makes in progress: close() waits for them (each discards its spare once the pool is closed). */
  readonly #making = new Set<Promise<void>>();
  #closed = false;

  constructor(private readonly o: SparePoolOptions) {}

  get enabled(): boolean {
    return this.o.max > 0 && !this.#closed;
  }

  /** The ready spare of `key`, now the caller's (it is no longer in the pool), or undefined. */
  take(key: string): S | undefined {
    const e = this.#entries.get(key);
    if (!e?.spare) return undefined;
    clearTimeout(e.idle);
    this.#entries.delete(key);
    return e.spare;
  }

  /**
   * Makes a spare of `key` (a VM of `ramMib`) unless one is there or being made, or it does not
   * fit in the host's room; never throws (errors go to onError).
   */
  replenish(key: string, ramMib: number, make: () => Promise<S>): void {
    if (!this.enabled || this.#entries.has(key)) return;
    if (this.#entries.size >= this.o.max) {
      const oldest = this.#byAge()[0];
      if (!oldest) return; // every place is taken by one being made
      this.#drop(oldest);
    }
    if (this.o.roomMib && this.heldMib + ramMib > this.o.roomMib()) return;
    const entry: Entry<S> = { lastUsed: Date.now(), ramMib };
    this.#entries.set(key, entry);
    const made = make().then(
      async (spare) => {
        // Closed, dropped meanwhile, or the host's room shrank while it loaded (VMs started).
        if (this.#closed || this.#entries.get(key) !== entry || (this.o.roomMib && this.heldMib > this.o.roomMib())) {
          if (this.#entries.get(key) === entry) this.#entries.delete(key);
          await spare.discard();
          return;
        }
        entry.spare = spare;
        entry.idle = setTimeout(() => this.#drop(key), this.o.idleMs);
        entry.idle.unref();
      },
      (err: unknown) => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
        this.o.onError?.(err, key);
      },
    );
    // Never rejects (a discard that throws is only reported): close() waits on it, nothing else does.
    const settled = made.catch((err: unknown) => this.o.onError?.(err, key));
    this.#making.add(settled);
    void settled.then(() => this.#making.delete(settled));
  }

  /** A spare that ended by itself (its QEMU died): out of the pool. */
  forget(spare: S): void {
    for (const [key, e] of this.#entries) {
      if (e.spare !== spare) continue;
      clearTimeout(e.idle);
      this.#entries.delete(key);
    }
  }

  /** Spares ready to be adopted and their guest RAM (those still loading are not counted). */
  get readyUsage(): { count: number; ramMib: number } {
    let count = 0;
    let ramMib = 0;
    for (const e of this.#entries.values()) {
      if (!e.spare) continue;
      count++;
      ramMib += e.ramMib;
    }
    return { count, ramMib };
  }

  /** Guest RAM of the spares held or being made, MiB. */
  get heldMib(): number {
    let sum = 0;
    for (const e of this.#entries.values()) sum += e.ramMib;
    return sum;
  }

  /**
   * A VM is about to start that is not a spare's: discards spares, least recently used first,
   * until those left fit in `roomMib` (the host's room once that VM runs). Spares being made
   * count and stay (they are dropped as they finish if the room is still short).
   */
  trim(roomMib: number): void {
    for (const key of this.#byAge()) {
      if (this.heldMib <= roomMib) return;
      this.#drop(key);
    }
  }

  /** Spares ready now (for tests and status). */
  get ready(): S[] {
    return [...this.#entries.values()].flatMap((e) => (e.spare ? [e.spare] : []));
  }

  /** Discards every spare, and waits for those being made to be made and discarded; no new ones after this. */
  async close(): Promise<void> {
    this.#closed = true;
    const spares = this.ready;
    for (const e of this.#entries.values()) clearTimeout(e.idle);
    this.#entries.clear();
    await Promise.all([...spares.map((s) => s.discard().catch((err: unknown) => this.o.onError?.(err, 'close'))), ...this.#making]);
  }

  /** Keys of ready spares, least recently used first. */
  #byAge(): string[] {
    return [...this.#entries].filter(([, e]) => e.spare).sort(([, a], [, b]) => a.lastUsed - b.lastUsed).map(([k]) => k);
  }

  #drop(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    clearTimeout(e.idle);
    this.#entries.delete(key);
    if (e.spare) void e.spare.discard().catch((err: unknown) => this.o.onError?.(err, key));
  }
}
