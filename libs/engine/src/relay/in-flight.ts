/**
 * Data entries on their way to Redis, up to `limit` at once. Awaiting every XADD's reply
 * before the next one made bulk transfers a sequence of round trips (a 64 MiB upload crawled
 * at a few MB/s); ioredis keeps the commands of one connection in order, so entries still land
 * in the stream in the order they were sent. The flow-control window bounds the bytes.
 */
export class InFlight {
  readonly #pending = new Set<Promise<void>>();
  #failed?: unknown;

  constructor(private readonly limit = 4) {}

  /** Starts tracking one send; waits while `limit` are unanswered. Rejects with the first send that failed. */
  async add(send: Promise<void>): Promise<void> {
    if (this.#failed) throw this.#failed;
    const tracked: Promise<void> = send.then(
      () => void this.#pending.delete(tracked),
      (err: unknown) => {
        this.#pending.delete(tracked);
        this.#failed ??= err;
      },
    );
    this.#pending.add(tracked);
    while (this.#pending.size >= this.limit) await Promise.race(this.#pending);
    if (this.#failed) throw this.#failed;
  }

  /** Waits for every send to be answered (before an entry that must not overtake them is awaited). */
  async settle(): Promise<void> {
    await Promise.all(this.#pending);
    if (this.#failed) throw this.#failed;
  }
}
