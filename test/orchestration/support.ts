import { performance } from 'node:perf_hooks';
/**
 * Shared helpers of the orchestration tests: a private Redis database per test
 * file (flushed before use, only that database), in-process workers that boot
 * real QEMU microVMs (the worker's normal backend selection; the kernel from
 * MONOCORE_TEST_KERNEL_DIR, the busybox test image pulled by the worker's
 * puller), ways to see every live VM of a service in /proc, and waiting helpers.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Orchestrator, type ServiceStatus, type StateEvent } from '@monocore/engine';
import { startWorker, type MonocoreWorker, type StartWorkerOptions } from '@monocore/worker';
import { redisUrl, testEnvWithKernel, type TestEnvWithKernel } from '../support/env.js';
import { spawnTied } from '../support/tied-child.js';

/** The shared test Redis (throws loudly naming the variable when the services are not up). */
export function redisBaseUrl(): string {
  return redisUrl().replace(/\/\d*$/, '');
}

/**
 * A Redis URL on database `db` (each test file uses its own), flushed first.
 * Each file has its own database: TEST_REDIS_DBS in test/support/env.ts (the
 * puller tests use DB 0 with unique queue names; redis-restart and the chaos
 * soak run Redis servers of their own).
 */
export async function freshDb(db: number): Promise<string> {
  const url = `${redisBaseUrl()}/${db}`;
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  await r.flushdb();
  await r.quit();
  return url;
}

export const quiet = pino({ level: process.env.MONOCORE_TEST_LOG ?? 'silent' });

export function tempHome(tag: string): string {
  return mkdtempSync(join(tmpdir(), `mc-orch-${tag}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface Harness {
  url: string;
  orch: Orchestrator;
  workers: MonocoreWorker[];
  homes: string[];
  close(): Promise<void>;
}

/**
 * The test services plus the guest kernel; also exports MONOCORE_KERNEL_DIR so
 * workers (in process or spawned with this environment) find the kernel the
 * way they do in production.
 */
export function vmEnv(): TestEnvWithKernel {
  const env = testEnvWithKernel();
  process.env.MONOCORE_KERNEL_DIR = env.kernelDir;
  return env;
}

/** An Orchestrator plus `hosts` in-process workers (QEMU microVMs, fast heartbeats). */
export async function harness(
  db: number,
  hosts: Array<Partial<StartWorkerOptions> & { hostId: string }> = [{ hostId: 'h1' }],
): Promise<Harness> {
  vmEnv();
  const url = await freshDb(db);
  const orch = new Orchestrator({
    redisUrl: url,
    logger: quiet,
    jobs: { startAttempts: 2, startBackoffMs: 100, pullBackoffMs: 100, gatePollMs: 1000 },
  });
  const workers: MonocoreWorker[] = [];
  const homes: string[] = [];
  for (const h of hosts) {
    const home = tempHome(h.hostId);
    homes.push(home);
    workers.push(
      await startWorker({
        redisUrl: url,
        home,
        cpus: 64,
        ramMib: 8 * 1024,
        leaseMs: 4000,
        restartBackoffMs: 100,
        bootTimeoutMs: 60_000,
        logger: quiet,
        jobs: { gatePollMs: 1000 },
        ...h,
      }),
    );
  }
  return {
    url,
    orch,
    workers,
    homes,
    async close() {
      for (const w of workers) await w.close({ handBack: false });
      await orch.close();
      for (const d of homes) removeDir(d);
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `fn` returns a truthy value; fails naming `what` after timeoutMs. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const end = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

export function byName(list: ServiceStatus[]): Record<string, ServiceStatus> {
  return Object.fromEntries(list.map((s) => [s.name, s]));
}

/** Every event recorded so far (the capped stream holds the whole test's history). */
export async function allEvents(orch: Orchestrator): Promise<StateEvent[]> {
  const out: StateEvent[] = [];
  let since = '0';
  for (;;) {
    const batch = await orch.state.readEvents(since, 1000);
    if (batch.length === 0) return out;
    out.push(...batch);
    since = batch[batch.length - 1]!.id;
  }
}

/** A service entry for a config (the REST/TOML shape): a microVM of the busybox test image. */
export function svc(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, base: vmEnv().image, command: '/bin/sleep', args: ['3600'], cpus: 1, ram: 128, ...extra };
}

/**
 * Live QEMU processes per service name: a `qemu-system*` process whose command
 * line names the service's own state dir (`<home>/services/<name>/`, where its
 * writable disk lives) under one of `homes` (the hosts of this test).
 */
export function vmCopies(names: string[], homes: string[]): Map<string, number[]> {
  const out = new Map<string, number[]>(names.map((n) => [n, []]));
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!/(^|\/)qemu-system[^/]*$/.test(argv[0] ?? '')) continue;
    const line = argv.join(' ');
    for (const n of names) if (homes.some((h) => line.includes(`${h}/services/${n}/`))) out.get(n)!.push(Number(p));
  }
  return out;
}

/** Total live VMs of these services. */
export const liveVms = (names: string[], homes: string[]): number => [...vmCopies(names, homes).values()].reduce((a, p) => a + p.length, 0);

/**
 * Samples the live VMs of `names` every `everyMs` (10 Hz by default) until
 * stopped, recording every sample in which a service had more than one copy
 * and, per service, which pids were seen and when each was last seen.
 */
export class CopyWatcher {
  readonly violations: string[] = [];
  samples = 0;
  /** pid → first and last time (ms, Date.now()) it was seen, per service. */
  readonly seen = new Map<string, Map<number, { first: number; last: number }>>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly names: string[],
    private readonly homes: string[],
    everyMs = 100,
  ) {
    for (const n of names) this.seen.set(n, new Map());
    this.sample();
    this.#timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): Map<string, number[]> {
    const now = Date.now();
    const copies = vmCopies(this.names, this.homes);
    this.samples++;
    for (const [name, pids] of copies) {
      if (pids.length > 1) this.violations.push(`${new Date(now).toISOString()} ${name}: ${pids.length} live copies (pids ${pids.join(', ')})`);
      const seen = this.seen.get(name)!;
      for (const pid of pids) {
        const s = seen.get(pid);
        if (s) s.last = now;
        else seen.set(pid, { first: now, last: now });
      }
    }
    return copies;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether a Redis answers PING at `url` (one try, no retries). */
export async function redisAnswers(url: string): Promise<boolean> {
  const c = new Redis(url, { maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

/** redis-server arguments for a private Redis with the persistence monocore expects (AOF, noeviction). */
export function redisServerArgs(port: number, dir: string, fsync: 'always' | 'everysec'): string[] {
  return [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--maxmemory-policy', 'noeviction',
  ];
}

const workerMain = fileURLToPath(new URL('../../../apps/worker/dist/main.js', import.meta.url));

export interface WorkerProcessOptions {
  redisUrl: string;
  hostId: string;
  home: string;
  ramMib: number;
  cpus?: number;
  /** MONOCORE_LEASE_MS (default 4000: renewals every 1 s, fence after 3 s). */
  leaseMs?: number;
}

/** The environment of a worker process (`apps/worker/dist/main.js`) acting as one host. */
export function workerProcessEnv(o: WorkerProcessOptions): NodeJS.ProcessEnv {
  return {
    ...process.env,
    MONOCORE_REDIS_URL: o.redisUrl,
    MONOCORE_HOST_ID: o.hostId,
    MONOCORE_HOME: o.home,
    MONOCORE_WORKER_CPUS: String(o.cpus ?? 16),
    MONOCORE_WORKER_RAM_MIB: String(o.ramMib),
    MONOCORE_LEASE_MS: String(o.leaseMs ?? 4000),
    MONOCORE_LOG_LEVEL: process.env.MONOCORE_TEST_LOG ?? 'error',
  };
}

/** A worker process acting as one host (the production entry point, not startWorker in-process). */
export function spawnWorkerProcess(o: WorkerProcessOptions): ChildProcess {
  return spawnTied(process.execPath, [workerMain], { env: workerProcessEnv(o) });
}

/** The worker entry point, for tests that restart a worker with their own arguments. */
export const WORKER_MAIN = workerMain;
