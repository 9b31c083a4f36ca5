import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_PREFIX, findQueueNames } from '@monocore/engine';

/**
 * Keeps a Queue handle for every BullMQ queue under monocore's prefix
 * (findQueueNames), so Bull Board lists per-host queues (`pull-<host>`, …) as
 * hosts appear, and every queue of a flow is registered (otherwise Bull Board draws no tree for
 * it: docs/ORCHESTRATION.md).
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
    for (const name of await findQueueNames(this.redis)) {
      if (this.queues.has(name)) continue;
      const queue = new Queue(name, { prefix: QUEUE_PREFIX, connection: this.queueConnection });
      // Without a listener BullMQ prints every connection error while Redis is away; ioredis reconnects.
      queue.on('error', () => undefined);
      this.queues.set(name, queue);
    }
    return [...this.queues.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.queues.clear();
  }
}
