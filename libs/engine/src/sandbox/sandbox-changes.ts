import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Keys } from '../state/keys.js';
import { lastStreamId, tailEvents } from '../state/stream-tail.js';

/**
 * Wakes callers waiting for a sandbox to change, from the state's event stream (every sandbox
 * transition appends to it in the same Lua script that writes the record: sandbox-store.ts).
 * One tail of the stream per API process (state/stream-tail.ts: a blocking XREAD on a
 * connection of its own) dispatches to any number of waiters; it reads on from the stream's
 * last entry as of start() (so nothing recorded after a wait began is missed). A create that
 * waits for `running` then answers as soon as the worker has recorded it, where a 50 ms poll
 * added 25 ms on average (bench/RESULTS.md "fast start"). A wait is also bounded by its own timeout: a stream that cannot be read (Redis
 * restarting) makes waiters poll at that pace instead of hanging.
 */
export class SandboxChanges {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #stop = new AbortController();
  #loop?: Promise<void>;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
  ) {}

  /** Starts tailing the stream: changes recorded from now on wake their waiters. */
  start(): void {
    if (this.#stop.signal.aborted) return;
    // Where the tail starts is asked for now, on the caller's connection: ahead of any record
    // the caller reads on it next, and of any change recorded after this call.
    this.#loop ??= this.#run(lastStreamId(this.redis, Keys.events()));
  }

  /**
   * Resolves on the next change of sandbox `id` recorded after this call, after `maxMs`, or
   * when `signal` aborts. Register before reading the record: a change between the read and
   * the wait still wakes it. `cancel()` (always call it) forgets the wait.
   */
  next(id: string, maxMs: number, signal?: AbortSignal): { changed: Promise<void>; cancel: () => void } {
    let wake!: () => void;
    const changed = new Promise<void>((resolve) => (wake = resolve));
    const timer = setTimeout(() => done(), maxMs);
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      const set = this.#waiters.get(id);
      set?.delete(done);
      if (set?.size === 0) this.#waiters.delete(id);
      wake();
    };
    let set = this.#waiters.get(id);
    if (!set) this.#waiters.set(id, (set = new Set()));
    set.add(done);
    signal?.addEventListener('abort', done, { once: true });
    this.start();
    return { changed, cancel: done };
  }

  async #run(from: Promise<string>): Promise<void> {
    const signal = this.#stop.signal;
    const retrying = (err: unknown): void =>
      this.logger.debug({ err: (err as Error).message }, 'sandbox change feed: reading the event stream failed; retrying');
    while (!signal.aborted) {
      try {
        const events = tailEvents(this.redis, from, { signal, onError: retrying, connection: { maxRetriesPerRequest: null } });
        for await (const e of events) if (e.sandbox !== undefined) this.#wake(e.sandbox);
      } catch (err) {
        // Only reading where to start fails here (the tail retries its reads itself): Redis was
        // away at start(). Start again from its last entry once it answers.
        if (signal.aborted) break;
        retrying(err);
        await sleep(500, undefined, { signal }).catch(() => undefined);
        from = lastStreamId(this.redis, Keys.events());
      }
    }
  }

  #wake(id: string): void {
    const set = this.#waiters.get(id);
    if (!set) return;
    for (const done of [...set]) done();
  }

  async close(): Promise<void> {
    this.#stop.abort(); // ends the tail at once, its connection closed
    for (const set of [...this.#waiters.values()]) for (const done of [...set]) done();
    await this.#loop;
  }
}
