import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { Keys } from './keys.js';

export interface HostInfo {
  id: string;
  cpus: number;
  ramMib: number;
  /** Hypervisor backends usable on the host, e.g. ["qemu"]. */
  backends: string[];
  /** Which backend the host runs and why, for people (`qemu (tcg): kvm_pvm loaded…; kernel 6.1…`). */
  backendDetail?: string;
  /** The acceleration the backend really uses (kvm, hvf, tcg), as its available() reported it after any boot probe. */
  accel?: string;
  /** monocore release of the worker process. */
  version?: string;
  startedAt?: string;
  pid?: number;
}

export interface HostCapacity extends HostInfo {
  alive: boolean;
  usedCpus: number;
  usedRamMib: number;
  freeCpus: number;
  freeRamMib: number;
  /** service -> {cpus, ramMib} placed on the host. */
  allocations: Record<string, { cpus: number; ramMib: number }>;
  /** When the host last registered or heartbeat (ISO time by the worker's clock). */
  lastHeartbeatAt?: string;
  /** Restores held ahead of the request (docs/SNAPSHOTS.md "Spares") and their resident guest RAM, as of the last heartbeat. */
  spares?: HostSpares;
}

export interface HostSpares {
  count: number;
  ramMib: number;
}

/** What a heartbeat reports besides being alive. */
export interface HostUsage {
  freeCpus: number;
  freeRamMib: number;
  spares?: HostSpares;
}

/**
 * Milliseconds since the host's last heartbeat, or undefined when it never
 * reported one. Measured against the host's own clock (it writes the time), so
 * clock skew between machines shows up here; `alive` is decided by Redis alone.
 */
export function heartbeatAgeMs(host: Pick<HostCapacity, 'lastHeartbeatAt'>, now = Date.now()): number | undefined {
  const t = host.lastHeartbeatAt ? Date.parse(host.lastHeartbeatAt) : NaN;
  return Number.isNaN(t) ? undefined : Math.max(0, now - t);
}

/**
 * Hosts (worker processes) and their capacity. A host is alive while its
 * heartbeat key exists; the key has a TTL a few heartbeats long, so a killed
 * worker disappears within the TTL and its services are rescheduled.
 */
export class HostRegistry {
  constructor(readonly redis: Redis) {}

  async register(info: HostInfo, ttlMs: number): Promise<void> {
    await this.redis
      .multi()
      .hset(Keys.host(info.id), {
        id: info.id,
        cpus: info.cpus,
        ram_mib: info.ramMib,
        backends: info.backends.join(','),
        backend_detail: info.backendDetail ?? '',
        ...(info.accel !== undefined ? { accel: info.accel } : {}),
        ...(info.version !== undefined ? { version: info.version } : {}),
        started_at: info.startedAt ?? new Date().toISOString(),
        pid: info.pid ?? process.pid,
        heartbeat_at: new Date().toISOString(),
      })
      .sadd(Keys.hosts(), info.id)
      .set(Keys.hostAlive(info.id), String(Date.now()), 'PX', ttlMs)
      .exec();
  }

  /**
   * Refresh the heartbeat, in one round trip (it goes out with a renewal round: HostLiveness).
   * Returns false if the key had expired (the host was presumed dead meanwhile).
   */
  async heartbeat(id: string, ttlMs: number, usage?: HostUsage): Promise<boolean> {
    const res = await this.redis
      .pipeline()
      .set(Keys.hostAlive(id), String(Date.now()), 'PX', ttlMs, 'GET')
      .sadd(Keys.hosts(), id)
      .hset(Keys.host(id), {
        heartbeat_at: new Date().toISOString(),
        ...(usage ? { free_cpus: usage.freeCpus, free_ram_mib: usage.freeRamMib } : {}),
        ...(usage?.spares ? { spares: usage.spares.count, spare_ram_mib: usage.spares.ramMib } : {}),
      })
      .exec();
    const [err, prev] = res?.[0] ?? [new Error('heartbeat: no reply from Redis'), null];
    if (err) throw err;
    return prev !== null;
  }

  async unregister(id: string): Promise<void> {
    await this.redis.multi().del(Keys.hostAlive(id), Keys.host(id), Keys.hostAlloc(id)).srem(Keys.hosts(), id).exec();
  }

  async ids(): Promise<string[]> {
    return (await this.redis.smembers(Keys.hosts())).sort();
  }

  /** Every registered host with its capacity; `alive` says whether its heartbeat is current. */
  async list(): Promise<HostCapacity[]> {
    const ids = await this.ids();
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(Keys.host(id)).exists(Keys.hostAlive(id)).hgetall(Keys.hostAlloc(id));
    const res = (await pipe.exec()) ?? [];
    const out: HostCapacity[] = [];
    ids.forEach((id, i) => {
      const h = (res[i * 3]?.[1] ?? {}) as Record<string, string>;
      const alive = Number(res[i * 3 + 1]?.[1] ?? 0) === 1;
      const alloc = (res[i * 3 + 2]?.[1] ?? {}) as Record<string, string>;
      const cpus = Number(h.cpus ?? 0);
      const ramMib = Number(h.ram_mib ?? 0);
      const allocations: HostCapacity['allocations'] = {};
      let usedCpus = 0;
      let usedRamMib = 0;
      for (const [svc, v] of Object.entries(alloc)) {
        const [c, r] = v.split(':').map(Number);
        allocations[svc] = { cpus: c ?? 0, ramMib: r ?? 0 };
        usedCpus += c ?? 0;
        usedRamMib += r ?? 0;
      }
      out.push({
        id,
        cpus,
        ramMib,
        backends: h.backends ? h.backends.split(',') : [],
        ...(h.backend_detail ? { backendDetail: h.backend_detail } : {}),
        accel: h.accel || undefined,
        version: h.version || undefined,
        lastHeartbeatAt: h.heartbeat_at || undefined,
        startedAt: h.started_at,
        pid: h.pid ? Number(h.pid) : undefined,
        alive,
        usedCpus,
        usedRamMib,
        freeCpus: cpus - usedCpus,
        freeRamMib: ramMib - usedRamMib,
        allocations,
        ...(h.spares !== undefined ? { spares: { count: Number(h.spares), ramMib: Number(h.spare_ram_mib ?? 0) } } : {}),
      });
    });
    return out;
  }

  async alive(): Promise<HostCapacity[]> {
    return (await this.list()).filter((h) => h.alive);
  }

  async isAlive(id: string): Promise<boolean> {
    return (await this.redis.exists(Keys.hostAlive(id))) === 1;
  }

  async allocate(host: string, service: string, cpus: number, ramMib: number): Promise<void> {
    await this.redis.hset(Keys.hostAlloc(host), service, `${cpus}:${ramMib}`);
  }

  async release(host: string, service: string): Promise<void> {
    await this.redis.hdel(Keys.hostAlloc(host), service);
  }

  /**
   * A short lock (SET NX PX) for placement and reaping. Returns a release
   * function, or null when someone else holds it.
   */
  async lock(name: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}`;
    const ok = await this.redis.set(Keys.lock(name), token, 'PX', ttlMs, 'NX');
    if (ok !== 'OK') return null;
    return async () => {
      await this.redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        1,
        Keys.lock(name),
        token,
      );
    };
  }

  /** Wait for a lock, polling; throws after timeoutMs. */
  async withLock<T>(name: string, ttlMs: number, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const release = await this.lock(name, ttlMs);
      if (release) {
        try {
          return await fn();
        } finally {
          await release();
        }
      }
      if (performance.now() > until) throw new Error(`lock ${name} busy for ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 20));
    }
  }
}
