import { Job, Queue, type FlowProducer } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import {
  QUEUE_PREFIX,
  QueueNames,
  type HostRegistry,
  type ImageStore,
  type JobTuning,
  type LeaseTiming,
  type MetricsRecorder,
  type MonocoreHome,
  type RelayServer,
  type SandboxStore,
  type StateStore,
} from '@monocore/engine';
import type { HostLiveness } from './host-liveness.js';
import type { SandboxHost } from './sandbox-host.js';
import type { Supervisor } from './supervisor.js';

/** What every processor of this worker shares. */
export interface WorkerContext {
  hostId: string;
  home: MonocoreHome;
  redis: Redis;
  state: StateStore;
  hosts: HostRegistry;
  images: ImageStore;
  supervisor: Supervisor;
  /** The sandbox VMs of this host. */
  sandboxes: SandboxHost;
  sandboxStore: SandboxStore;
  /** Exec and file calls from API processes (docs/RELAY.md). */
  relay: RelayServer;
  /** `<pid>@<started_at>` of this worker process, as its host hash says (callers notice a restart by it). */
  worker: string;
  /** Cpus and RAM of every VM held here: services and sandboxes. */
  usage(): { cpus: number; ramMib: number };
  logger: Logger;
  /** Durations and counters of this host, recorded into Redis for GET /metrics (labelled with the host). */
  metrics: MetricsRecorder;
  /** Lease, heartbeat and fence timings (one setting: leaseTiming()). */
  timing: LeaseTiming;
  /** This host's heartbeat and leases: take a lease right before booting. */
  liveness: HostLiveness;
  /** Capacity this host offers (what it registered). */
  capacity: { cpus: number; ramMib: number };
  tuning: JobTuning;
  queue(name: string): Queue;
  flows: FlowProducer;
  /**
   * Run start/stop/remove of one service one at a time on this host (BullMQ is
   * at-least-once and jobs of several requests may target the same service).
   */
  serial<T>(service: string, fn: () => Promise<T>): Promise<T>;
  /** Promote gate jobs waiting on a service so they re-check now instead of at their next poll. */
  promoteGates(ids: readonly string[]): Promise<void>;
}

export function queueCache(redis: Redis): { get(name: string): Queue; close(): Promise<void> } {
  const queues = new Map<string, Queue>();
  return {
    get(name: string): Queue {
      let q = queues.get(name);
      if (!q) {
        q = new Queue(name, { connection: redis, prefix: QUEUE_PREFIX });
        q.on('error', () => undefined); // connection errors: ioredis reconnects; callers see failed commands
        queues.set(name, q);
      }
      return q;
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close().catch(() => undefined)));
    },
  };
}

export async function promoteGates(ctx: Pick<WorkerContext, 'queue' | 'logger'>, ids: readonly string[]): Promise<void> {
  const q = ctx.queue(QueueNames.gate);
  await Promise.all(
    ids.map(async (id) => {
      try {
        // One round trip: promote() fails harmlessly when the gate is not delayed (yet or any more).
        await new Job(q, 'await', {}, {}, id).promote();
      } catch {
        // not delayed any more (raced with its own poll): it re-checks anyway
      }
    }),
  );
}

/** Job id from a BullMQ job key `{monocore}:<queue>:<id>`. */
export function jobIdOfKey(key: string): string {
  return key.slice(key.lastIndexOf(':') + 1);
}

/** What a child job id of a request means: `<d>.pull.<svc>`, `<d>.start.<svc>`, `<d>.gate.<parent>.<target>`. */
export function parseChildId(id: string): { kind: 'pull' | 'start' | 'stop' | 'gate' | 'other'; service: string } {
  const parts = id.split('.');
  const kind = parts[1];
  if (kind === 'pull' || kind === 'start' || kind === 'stop') return { kind, service: parts[2] ?? '' };
  if (kind === 'gate') return { kind, service: parts[3] ?? '' };
  return { kind: 'other', service: parts[2] ?? '' };
}

/** A per-key promise chain: calls with the same key run one after another. */
export function keyedMutex(): <T>(key: string, fn: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const prev = tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    tails.set(key, tail);
    void tail.then(() => {
      if (tails.get(key) === tail) tails.delete(key);
    });
    return run;
  };
}
