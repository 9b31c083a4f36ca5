export interface SharedReadsOptions {
  /** How long a read waits for more callers before it starts (default 3 ms; 0: the next event-loop turn). */
  gatherMs?: number;
}

/**
 * Identical reads that arrive together share one execution. A caller joins a read
 * that has not started yet, never one already under way: that one may have read
 * Redis before the caller's own earlier write (an `up` it just made) landed, or
 * before the event the caller just saw.
 *
 * A read starts `gatherMs` after its first caller. Clients whose answers went out
 * together come back a few milliseconds apart: the pause lets them share one read
 * instead of each fraction starting its own, and costs a lone caller just that pause
 * (bench/RESULTS.md, "/status at 1 and 10 connections").
 */
export class SharedReads<T> {
  readonly #pending = new Map<string, Promise<T>>();
  readonly #gatherMs: number;

  constructor(options: SharedReadsOptions = {}) {
    this.#gatherMs = options.gatherMs ?? 3;
  }

  /** The result of `read`, or of an identical read (same key) that starts after this call. */
  get(key: string, read: () => Promise<T>): Promise<T> {
    const joined = this.#pending.get(key);
    if (joined) return joined;
    const gathered = new Promise<void>((resolve) => (this.#gatherMs > 0 ? setTimeout(resolve, this.#gatherMs) : setImmediate(resolve)));
    const next = gathered.then(() => {
      this.#pending.delete(key);
      return read();
    });
    this.#pending.set(key, next);
    return next;
  }
}
