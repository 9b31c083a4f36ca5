import type { Redis } from 'ioredis';
import { Keys, STREAM_CAPS } from '../state/keys.js';

/**
 * Tees a service's output lines into a capped Redis stream
 * (`{monocore}:logs:<service>:<stream>`), so the API can serve logs of a
 * service running on any host. Lines are batched (one pipeline per tick) and
 * dropped — never blocking the VM — while Redis is unreachable; the host's
 * rotating files keep everything.
 */
export class RedisLogSink {
  #buffer: Array<{ stream: 'stdout' | 'stderr'; line: string }> = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  dropped = 0;

  constructor(
    readonly redis: Redis,
    readonly service: string,
    readonly flushMs = 25,
    readonly maxBuffered = 10_000,
  ) {}

  push(stream: 'stdout' | 'stderr', line: string): void {
    if (this.#buffer.length >= this.maxBuffered) {
      this.dropped++;
      return;
    }
    this.#buffer.push({ stream, line });
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.flushMs);
  }

  flush(): Promise<void> {
    const batch = this.#buffer;
    this.#buffer = [];
    if (batch.length === 0) return this.#flushing;
    this.#flushing = this.#flushing.then(async () => {
      const pipe = this.redis.pipeline();
      for (const { stream, line } of batch) {
        pipe.xadd(Keys.logs(this.service, stream), 'MAXLEN', '~', STREAM_CAPS.logLines, '*', 'line', line);
      }
      try {
        await pipe.exec();
      } catch {
        this.dropped += batch.length;
      }
    });
    return this.#flushing;
  }

  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
