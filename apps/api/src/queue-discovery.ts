import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_PREFIX } from '@monocore/engine';

/**
 * Finds every BullMQ queue under monocore's prefix (a queue writes
 * `<prefix>:<name>:meta` as soon as anyone opens it), so Bull Board lists
 * per-host queues (`pull-<host>`, …) as hosts appear, and every queue of a
 * flow is registered (FLOWS.md: otherwise its tree does not show).
 */
export class QueueDiscovery {
  private readonly queues = new Map<string, Queue>();

  constructor(
    /** Used for SCAN only. */
    private readonly redis: Redis,
    /** Connection options for the Queue objects (BullMQ duplicates as needed). */
    private readonly queueConnection: Redis,
  ) {}

  async discover(): Promise<Queue[]> {
    const pattern = `${QUEUE_PREFIX}:*:meta`;
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      for (const key of keys) {
        const name = key.slice(QUEUE_PREFIX.length + 1, -':meta'.length);
        // Our own state keys share the prefix ({monocore}:service:<name>…): queue names never contain ':'.
        if (name.length === 0 || name.includes(':') || this.queues.has(name)) continue;
        const queue = new Queue(name, { prefix: QUEUE_PREFIX, connection: this.queueConnection });
        // Without a listener BullMQ prints every connection error while Redis is away; ioredis reconnects.
        queue.on('error', () => undefined);
        this.queues.set(name, queue);
      }
    } while (cursor !== '0');
    return [...this.queues.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.queues.clear();
  }
}
