import type { Redis } from 'ioredis';
import { Keys, STREAM_CAPS } from '../state/keys.js';

/**
 * Tees a service's output lines into a capped Redis stream
 * (`{monocore}:logs:<service>:<stream>`), so the API can serve logs of a
 * service running on any host. Lines are batched (one pipeline per tick) and
 * dropped — never blocking the VM — while Redis is unreachable or slower than
 * the guest; the host's rotating files keep everything.
 *
 * Memory is bounded whatever the guest prints and however long Redis is away:
 * at most one batch is in flight (a pipeline waiting for Redis holds it), and
 * lines arriving meanwhile wait in a buffer of at most `maxBuffered` lines and
 * `maxBufferedBytes`; beyond that the oldest buffered lines are dropped (the newest are kept)
 * and counted in `dropped`.
 */
export class RedisLogSink {
  #buffer: Array<{ stream: 'stdout' | 'stderr'; line: string }> = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;
  dropped = 0;

  constructor(
    readonly redis: Redis,
    readonly service: string,
    readonly flushMs = 25,
    readonly maxBuffered = 10_000,
    readonly maxBufferedBytes = 4 * 1024 * 1024,
  ) {}

  push(stream: 'stdout' | 'stderr', line: string): void {
    this.#buffer.push({ stream, line });
    this.#bytes += line.length;
    if (this.#buffer.length > this.maxBuffered || this.#bytes > this.maxBufferedBytes) this.#dropOldest();
    this.#schedule();
  }

  /**
   * Over the bound: the oldest buffered lines go, not the newest — the last lines before an
   * exit or a crash are the ones people read (a flood under a slow Redis once lost its final
   * line this way). A tenth is dropped at once, so a flood costs one splice per many lines.
   */
  #dropOldest(): void {
    const lines = Math.floor(this.maxBuffered * 0.9);
    const bytes = Math.floor(this.maxBufferedBytes * 0.9);
    let n = 0;
    let left = this.#bytes;
    while (n < this.#buffer.length - 1 && (this.#buffer.length - n > lines || left > bytes)) {
      left -= this.#buffer[n]!.line.length;
      n++;
    }
    this.#buffer.splice(0, n);
    this.#bytes = left;
    this.dropped += n;
  }

  #schedule(): void {
    // While a batch is in flight, the next one waits for it (see flush's finally).
    if (this.#timer || this.#inflight) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.flushMs);
  }

  /** Sends what is buffered (after the batch in flight, if any, has been answered). */
  flush(): Promise<void> {
    if (this.#inflight) return this.#inflight.then(() => this.flush());
    const batch = this.#buffer;
    if (batch.length === 0) return Promise.resolve();
    this.#buffer = [];
    this.#bytes = 0;
    const pipe = this.redis.pipeline();
    for (const { stream, line } of batch) {
      pipe.xadd(Keys.logs(this.service, stream), 'MAXLEN', '~', STREAM_CAPS.logLines, '*', 'line', line);
    }
    this.#inflight = pipe
      .exec()
      .then(
        () => undefined,
        () => {
          this.dropped += batch.length;
        },
      )
      .finally(() => {
        this.#inflight = undefined;
        if (this.#buffer.length > 0) this.#schedule();
      });
    return this.#inflight;
  }

  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
