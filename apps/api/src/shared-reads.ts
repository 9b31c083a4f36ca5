/**
 * Identical reads that arrive together share one execution. A caller joins a read
 * that has not started yet, never one already under way: that one may have read
 * Redis before the caller's own earlier write (an `up` it just made) landed, or
 * before the event the caller just saw. A read starts one event-loop turn after
 * its first caller, so the requests taken off the sockets in that turn join it.
 */
export class SharedReads<T> {
  readonly #pending = new Map<string, Promise<T>>();

  /** The result of `read`, or of an identical read (same key) that starts after this call. */
  get(key: string, read: () => Promise<T>): Promise<T> {
    const joined = this.#pending.get(key);
    if (joined) return joined;
    const next = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#pending.delete(key);
      return read();
    });
    this.#pending.set(key, next);
    return next;
  }
}
