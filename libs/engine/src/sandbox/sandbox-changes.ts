import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Keys } from '../state/keys.js';

/** How long one blocking read waits before it reads again (and notices close()). */
const BLOCK_MS = 2000;

/**
 * Wakes callers waiting for a sandbox to change, from the state's event stream (every sandbox
 * transition appends to it in the same Lua script that writes the record: sandbox-store.ts).
 * One blocking XREAD per API process, on a connection of its own, dispatches to any number of
 * waiters; it tails the stream from start() on (so nothing recorded after a wait began is
 * missed). A create that waits for `running` then answers as soon as
 * the worker has recorded it, where a 50 ms poll added 25 ms on average (bench/RESULTS.md "fast
 * start"). A wait is also bounded by its own timeout: a stream that cannot be read (Redis
 * restarting) makes waiters poll at that pace instead of hanging.
 */
export class SandboxChanges {
  readonly #waiters = new Map<string, Set<() => void>>();
  #conn?: Redis;
  #closed = false;
  #loop?: Promise<void>;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
  ) {}

  /** Starts tailing the stream: changes recorded from now on wake their waiters. */
  start(): void {
    this.#loop ??= this.#run();
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

  async #run(): Promise<void> {
    let since = '$';
    while (!this.#closed) {
      try {
        this.#conn ??= this.redis.duplicate({ maxRetriesPerRequest: null });
        const res = (await this.#conn.xread('COUNT', 500, 'BLOCK', BLOCK_MS, 'STREAMS', Keys.events(), since)) as Array<[string, Array<[string, string[]]>]> | null;
        for (const [, entries] of res ?? []) {
          for (const [entryId, fields] of entries) {
            since = entryId;
            // Field names sit at even positions ("kind" may have the value "sandbox").
            for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'sandbox') this.#wake(fields[i + 1] ?? '');
          }
        }
      } catch (err) {
        if (this.#closed) break;
        this.logger.debug({ err: (err as Error).message }, 'sandbox change feed: reading the event stream failed; retrying');
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  #wake(id: string): void {
    const set = this.#waiters.get(id);
    if (!set) return;
    for (const done of [...set]) done();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const set of [...this.#waiters.values()]) for (const done of [...set]) done();
    this.#conn?.disconnect();
    await this.#loop;
  }
}
