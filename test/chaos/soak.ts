import { performance } from 'node:perf_hooks';
/**
 * The chaos soak: 3 worker processes (each reaching Redis through a forwarder
 * it can be partitioned by), the API as its own process, a private Redis with
 * production persistence (AOF everysec), 20 services with dependencies in real
 * QEMU microVMs under TCG — then random faults for a while: kill -9 of a
 * worker, of a QEMU, of the API, Redis SIGKILL + restart, partitions of one
 * worker; deployments keep arriving through the API meanwhile. A watcher
 * samples every live QEMU process at 10 Hz for the whole run.
 *
 * Checked: never two live copies of a service; after the last fault every
 * desired service runs again (exactly once) within `recoveryBoundMs`; every
 * accepted deployment settles (none stuck); after `remove` no process, disk,
 * lease, state or namespace is left. Traffic stays on loopback.
 *
 * Used by test/chaos/chaos-soak.test.ts (2 minutes, in CI) and
 * bench/chaos.mjs (any length; results in bench/RESULTS.md).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Keys } from '@monocore/engine';
import { Partition } from '../support/partition.js';
import { spawnTied } from '../support/tied-child.js';
import {
  CopyWatcher,
  WORKER_MAIN,
  freePort,
  redisAnswers,
  redisServerArgs,
  removeDir,
  sleep,
  svc,
  tempHome,
  until,
  vmCopies,
  vmEnv,
  workerProcessEnv,
} from '../orchestration/support.js';

export type FaultKind = 'kill-worker' | 'kill-qemu' | 'kill-api' | 'kill-redis' | 'partition' | 'deploy';

export interface SoakOptions {
  /** How long faults are injected. */
  durationMs: number;
  services?: number;
  workers?: number;
  /** MONOCORE_LEASE_MS of the workers. */
  leaseMs?: number;
  /** Every desired service must run again within this long after the last fault. */
  recoveryBoundMs?: number;
  /** Pause between two faults, drawn uniformly from this range. */
  faultEveryMs?: [number, number];
  /** Random seed (the run prints it; the same seed draws the same faults). */
  seed?: number;
  log?: (line: string) => void;
}

export interface SoakReport {
  seed: number;
  durationMs: number;
  services: number;
  workers: number;
  faults: Record<FaultKind, number>;
  samples: number;
  /** Samples in which some service had two or more live copies. */
  violations: string[];
  /** From the end of the last fault until every desired service ran exactly once. */
  recoveryMs: number;
  recoveryBoundMs: number;
  deployments: { accepted: number; settledOk: number; settledNotOk: number; stuck: string[] };
  /** What `remove` left behind (must be empty). */
  leftovers: string[];
  /** Workers and the API that ended by themselves (must be empty: a restarted process waits for Redis, it does not exit). */
  exitedOnTheirOwn: string[];
  ok: boolean;
}

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const apiMain = join(repo, 'apps/api/dist/main.js');

/** mulberry32: a small seeded generator, so a failing run can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A child process the soak kills and starts again with the same arguments. */
class Restartable {
  #child?: ChildProcess;
  constructor(
    readonly name: string,
    private readonly cmd: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): void {
    if (this.running) return;
    this.#child = spawnTied(this.cmd, this.args, { env: this.env, stdout: 'ignore' });
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.#child;
    if (!c || !this.running) return;
    const exited = once(c, 'exit');
    c.kill(signal);
    await exited;
  }
}

interface ServiceView {
  name: string;
  status: string;
  host?: string;
  pid?: number;
}

/** Running, and its recorded pid is its one live QEMU. */
function runsOnce(s: ServiceView | undefined, livePids: number[]): boolean {
  return s?.status === 'running' && livePids.length === 1 && livePids[0] === s.pid;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  vmEnv(); // the kernel for the spawned workers; loud failure when the test services are down
  const log = options.log ?? (() => undefined);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const between = ([lo, hi]: [number, number]): number => lo + Math.floor(random() * (hi - lo));
  const nServices = options.services ?? 20;
  const nWorkers = options.workers ?? 3;
  const leaseMs = options.leaseMs ?? 4000;
  const recoveryBoundMs = options.recoveryBoundMs ?? 240_000;
  const faultEvery = options.faultEveryMs ?? [4000, 10_000];
  log(`chaos soak: seed ${seed}, ${nWorkers} workers, ${nServices} services, ${Math.round(options.durationMs / 1000)} s of faults`);

  const cleanup: Array<() => unknown> = [];
  const faults: Record<FaultKind, number> = { 'kill-worker': 0, 'kill-qemu': 0, 'kill-api': 0, 'kill-redis': 0, partition: 0, deploy: 0 };
  try {
    // Redis with production persistence.
    const redisDir = tempHome('chaos-redis');
    cleanup.push(() => removeDir(redisDir));
    const redisPort = await freePort();
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const redis = new Restartable('redis', 'redis-server', redisServerArgs(redisPort, redisDir, 'everysec'));
    cleanup.push(() => redis.kill());
    redis.start();
    await until('redis up', () => redisAnswers(redisUrl), 10_000);

    // Workers, each behind its own forwarder (a partition freezes it).
    const homes: string[] = [];
    const partitions: Partition[] = [];
    const workers: Restartable[] = [];
    for (let i = 0; i < nWorkers; i++) {
      const home = tempHome(`chaos-w${i}`);
      homes.push(home);
      cleanup.push(() => removeDir(home));
      const p = await Partition.start(`127.0.0.1:${redisPort}`);
      partitions.push(p);
      cleanup.push(() => p.close());
      const w = new Restartable(`w${i}`, process.execPath, [WORKER_MAIN], {
        ...workerProcessEnv({
          redisUrl: `redis://127.0.0.1:${p.port}`,
          hostId: `w${i}`,
          home,
          cpus: 64,
          ramMib: nServices * 128 + 512,
          leaseMs,
        }),
        MONOCORE_LOG_LEVEL: process.env.MONOCORE_TEST_LOG ?? 'fatal',
      });
      workers.push(w);
      cleanup.push(() => w.kill());
      w.start();
    }

    // The API, alone in its own process.
    const apiPort = await freePort();
    const api = new Restartable('api', process.execPath, [apiMain], {
      ...process.env,
      MONOCORE_REDIS_URL: redisUrl,
      MONOCORE_API_PORT: String(apiPort),
      MONOCORE_LOG_LEVEL: 'fatal',
    });
    cleanup.push(() => api.kill());
    api.start();
    const base = `http://127.0.0.1:${apiPort}`;
    const call = async <T>(method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number; body: T }> => {
      const res = await fetch(base + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { status: res.status, body: (await res.json()) as T };
    };
    /** Retries while the API or Redis is down (they are, on purpose). */
    const callRetrying = async <T>(method: string, path: string, body?: unknown, budgetMs = 120_000): Promise<T> =>
      until(`${method} ${path}`, async () => {
        const r = await call<T>(method, path, body).catch(() => undefined);
        return r && r.status < 300 ? r.body : undefined;
      }, budgetMs, 250);
    await until('every worker registered', async () => {
      const r = await call<{ hosts?: unknown[] }>('GET', '/healthz').catch(() => undefined);
      if (!r || r.status !== 200) return false;
      const c = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
      try {
        return (await c.smembers(Keys.hosts())).length === nWorkers;
      } finally {
        c.disconnect();
      }
    }, 60_000, 200);

    // 20 services: a binary tree of dependencies (s1, s2 after s0; s3, s4 after s1; …).
    const names = Array.from({ length: nServices }, (_, i) => `s${i}`);
    let generation = 0;
    const config = (): { service: Array<Record<string, unknown>> } => ({
      service: names.map((n, i) =>
        svc(n, {
          ram: 128,
          // Small disks: the worker's disk budget admits a VM only if every running VM's disk could fill (disk-budget.ts).
          disk: 256,
          restart: 'always',
          max_restarts: 100,
          envs: [`GEN=${i === nServices - 1 ? generation : 0}`],
          ...(i > 0 ? { depends_on: [`s${Math.floor((i - 1) / 2)}`] } : {}),
        }),
      ),
    });
    const deployments: string[] = [];
    const first = await callRetrying<{ deploymentId: string }>('POST', '/up', config());
    deployments.push(first.deploymentId);
    const status = async (): Promise<Map<string, ServiceView>> => {
      const { services } = await callRetrying<{ services: ServiceView[] }>('GET', '/status', undefined, 30_000);
      return new Map(services.map((s) => [s.name, s]));
    };
    const allRunningOnce = async (): Promise<boolean> => {
      const st = await status();
      const copies = vmCopies(names, homes);
      return names.every((n) => runsOnce(st.get(n), copies.get(n)!));
    };
    await until('all services running before the faults', allRunningOnce, 600_000, 500);
    log(`all ${nServices} services running; injecting faults`);

    const watcher = new CopyWatcher(names, homes);
    cleanup.push(() => watcher.stop());
    let redisKilledAt = 0;
    let lastSubmitAt = 0;
    const pending: Array<Promise<void>> = [];
    const end = performance.now() + options.durationMs;
    while (performance.now() < end) {
      await sleep(between(faultEvery));
      const kind = pick<FaultKind>(['kill-worker', 'kill-qemu', 'kill-api', 'kill-redis', 'partition', 'deploy']);
      switch (kind) {
        case 'kill-worker': {
          const w = pick(workers.filter((x) => x.running));
          if (!w) continue;
          await w.kill();
          const downMs = between([500, 3 * leaseMs]);
          log(`fault: kill -9 worker ${w.name}, back in ${downMs} ms`);
          pending.push(sleep(downMs).then(() => w.start()));
          break;
        }
        case 'kill-qemu': {
          const live = [...vmCopies(names, homes).entries()].flatMap(([n, pids]) => pids.map((pid) => ({ n, pid })));
          if (live.length === 0) continue;
          const v = pick(live);
          try {
            process.kill(v.pid, 'SIGKILL');
          } catch {
            continue;
          }
          log(`fault: kill -9 QEMU of ${v.n} (pid ${v.pid})`);
          break;
        }
        case 'kill-api': {
          if (!api.running) continue;
          await api.kill();
          const downMs = between([200, 3000]);
          log(`fault: kill -9 API, back in ${downMs} ms`);
          pending.push(sleep(downMs).then(() => api.start()));
          break;
        }
        case 'kill-redis': {
          if (!redis.running) continue;
          // AOF everysec may lose the last second: never kill within it of an accepted deployment.
          await sleep(Math.max(0, lastSubmitAt + 1200 - Date.now()));
          await redis.kill();
          redisKilledAt = Date.now();
          const downMs = between([300, 2 * leaseMs]);
          log(`fault: SIGKILL Redis, back in ${downMs} ms`);
          pending.push(sleep(downMs).then(() => redis.start()));
          break;
        }
        case 'partition': {
          const i = Math.floor(random() * nWorkers);
          const forMs = between([500, 3 * leaseMs]);
          partitions[i]!.cut();
          log(`fault: partition worker w${i} from Redis for ${forMs} ms`);
          pending.push(sleep(forMs).then(() => partitions[i]!.heal()));
          break;
        }
        case 'deploy': {
          generation++;
          const r = await call<{ deploymentId?: string }>('POST', '/up', config()).catch(() => undefined);
          if (r?.status === 200 || r?.status === 202) {
            deployments.push(r.body.deploymentId!);
            lastSubmitAt = Date.now();
            log(`deploy: generation ${generation} accepted (${r.body.deploymentId})`);
          } else {
            log(`deploy: generation ${generation} refused (${r?.status ?? 'no answer'}: API or Redis down) — not counted`);
            continue;
          }
          break;
        }
      }
      faults[kind]++;
    }
    // Let every scheduled restart and heal happen: the last fault ends here.
    await Promise.all(pending);
    for (const p of partitions) p.heal();
    const lastFaultEnd = Date.now();
    log(`faults over (${JSON.stringify(faults)}); waiting for recovery (bound ${recoveryBoundMs} ms)`);
    let recoveryMs = Number.NaN;
    try {
      await until('every desired service running exactly once', allRunningOnce, recoveryBoundMs, 500);
      recoveryMs = Date.now() - lastFaultEnd;
    } catch (err) {
      log(`recovery: ${(err as Error).message}`);
      // What is not running once, to tell a stuck service from a slow one.
      const st = await status().catch(() => new Map<string, ServiceView>());
      const copies = vmCopies(names, homes);
      for (const n of names) {
        const s = st.get(n);
        const c = copies.get(n)!;
        if (!runsOnce(s, c)) log(`  ${n}: ${JSON.stringify(s)} live copies ${JSON.stringify(c)}`);
      }
    }
    log(`recovered in ${recoveryMs} ms (last Redis kill ${redisKilledAt ? Date.now() - redisKilledAt : '-'} ms ago)`);

    // Every accepted deployment settles.
    const outcome = { accepted: deployments.length, settledOk: 0, settledNotOk: 0, stuck: [] as string[] };
    for (const id of deployments) {
      const r = await call<{ ok?: boolean }>('GET', `/deployments/${id}/wait?timeout=60`, undefined, 70_000).catch(() => undefined);
      if (r?.status === 200) {
        if (r.body.ok) outcome.settledOk++;
        else outcome.settledNotOk++;
      } else outcome.stuck.push(`${id}: ${r?.status ?? 'no answer'}`);
    }
    watcher.stop();

    // remove leaves nothing behind.
    const removed = await callRetrying<{ deploymentId: string }>('POST', '/remove', {});
    await call('GET', `/deployments/${removed.deploymentId}/wait?timeout=120`, undefined, 130_000).catch(() => undefined);
    const leftovers: string[] = [];
    await until('no VM left after remove', async () => [...vmCopies(names, homes).values()].every((p) => p.length === 0), 60_000, 200).catch(() =>
      leftovers.push(`live VMs: ${JSON.stringify([...vmCopies(names, homes)].filter(([, p]) => p.length > 0))}`),
    );
    // The removed services' host deletes their files in the remove job; another host that ran
    // them before a move deletes its stale copy on its next housekeeping pass (heartbeat period,
    // apps/worker/src/stray-service-files.ts): wait for that, bounded.
    const serviceDirs = (home: string): string[] => {
      const dir = join(home, 'services');
      return existsSync(dir) ? readdirSync(dir) : [];
    };
    await until('no service files left after remove', async () => homes.every((h) => serviceDirs(h).length === 0), 30_000, 200).catch(() => undefined);
    for (const home of homes) {
      const left = serviceDirs(home);
      if (left.length > 0) leftovers.push(`${home}: service dirs ${left.join(', ')}`);
    }
    const c = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      for (const pattern of [Keys.lease('*'), Keys.service('*')]) {
        const keys = await c.keys(pattern);
        if (keys.length > 0) leftovers.push(`Redis keys ${pattern}: ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ' …' : ''}`);
      }
    } finally {
      c.disconnect();
    }
    const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('mcegress'));
    if (netns.length > 0) leftovers.push(`egress namespaces: ${netns.join(', ')}`);

    const exitedOnTheirOwn = [...workers, api].filter((p) => !p.running).map((p) => p.name);
    const report: SoakReport = {
      seed,
      durationMs: options.durationMs,
      services: nServices,
      workers: nWorkers,
      faults,
      samples: watcher.samples,
      violations: watcher.violations,
      recoveryMs,
      recoveryBoundMs,
      deployments: outcome,
      leftovers,
      exitedOnTheirOwn,
      ok: watcher.violations.length === 0 && Number.isFinite(recoveryMs) && outcome.stuck.length === 0 && leftovers.length === 0 && exitedOnTheirOwn.length === 0,
    };
    log(`report: ${JSON.stringify(report)}`);
    return report;
  } finally {
    for (const f of cleanup.reverse()) await Promise.resolve(f()).catch(() => undefined);
  }
}
