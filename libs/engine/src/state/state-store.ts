import type { Redis } from 'ioredis';
import { MonocoreError } from '../errors/index.js';
import { Keys, STREAM_CAPS, leaseRecordKey } from './keys.js';
import { LuaScripts, type LuaScript } from './scripts/lua-scripts.js';
import { allowedSources, assertTransition, type ServiceState, type ServiceStatusName } from './service-state.js';
import { parseServiceRecord, parseStateEvent, type ServiceRecord, type StateEvent } from './service-record.js';
import { lastStreamId } from './stream-tail.js';

export interface TransitionOptions {
  /** Fencing: refuse unless the service is still assigned this epoch. */
  epoch?: number;
  /** Fencing: refuse unless the service is still assigned this host. */
  host?: string;
  /** Extra hash fields set in the same atomic step. */
  fields?: Record<string, string | number>;
  /** Hash fields removed in the same atomic step. */
  clear?: string[];
  /** Free text recorded with the event. */
  detail?: string;
}

/** Placement and dependency checks. `status` must stay first (absent = no such service). */
const BRIEF_FIELDS = ['status', 'host', 'epoch', 'running_hash', 'config_hash', 'desired', 'group', 'deployment_id', 'restarts', 'attempts', 'pid', 'started_at', 'exit_code'] as const;
/** Everything but `config`. */
const SUMMARY_FIELDS = [
  ...BRIEF_FIELDS,
  'reason', 'blocked_by', 'last_error', 'log_tail', 'cpu_percent', 'memory_bytes', 'image', 'depends_on', 'cpus', 'ram_mib', 'updated_at',
] as const;

/** Fields tied to a status's data; cleared when leaving it. */
const STATUS_DATA_FIELDS = ['reason', 'blocked_by'];

/**
 * Desired and actual state of every service, in Redis. Every change of status
 * goes through one Lua script that checks the state machine and the fencing
 * epoch and appends the change to the capped `{monocore}:events` stream, all
 * atomically.
 */
export class StateStore {
  readonly #shas = new Map<string, string>();

  constructor(readonly redis: Redis) {}

  async run(script: LuaScript, keys: string[], args: Array<string | number>): Promise<unknown> {
    let sha = this.#shas.get(script.name);
    if (!sha) {
      sha = (await this.redis.script('LOAD', script.lua)) as string;
      this.#shas.set(script.name, sha);
    }
    try {
      return await this.redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (err) {
      // After a Redis restart without the script cache (or SCRIPT FLUSH), load it again.
      if (err instanceof Error && err.message.includes('NOSCRIPT')) {
        this.#shas.delete(script.name);
        return this.redis.eval(script.lua, keys.length, ...keys, ...args);
      }
      throw err;
    }
  }

  async get(name: string): Promise<ServiceRecord | null> {
    const h = await this.redis.hgetall(Keys.service(name));
    return Object.keys(h).length === 0 ? null : parseServiceRecord(name, h);
  }

  async require(name: string): Promise<ServiceRecord> {
    const r = await this.get(name);
    if (!r) throw new MonocoreError('MC_ORCH_UNKNOWN_SERVICE', `no service "${name}" is recorded`, { service: name });
    return r;
  }

  async getMany(names: string[]): Promise<Map<string, ServiceRecord>> {
    const out = new Map<string, ServiceRecord>();
    if (names.length === 0) return out;
    const pipe = this.redis.pipeline();
    for (const n of names) pipe.hgetall(Keys.service(n));
    const res = (await pipe.exec()) ?? [];
    names.forEach((n, i) => {
      const [err, h] = res[i] ?? [null, {}];
      if (err) throw err;
      const hash = h as Record<string, string>;
      if (Object.keys(hash).length > 0) out.set(n, parseServiceRecord(n, hash));
    });
    return out;
  }

  /** The fields placement needs, without the (large) config JSON: one HMGET per service, pipelined. */
  async getBrief(names: string[]): Promise<Map<string, ServiceRecord>> {
    return this.getFields(names, BRIEF_FIELDS);
  }

  /** Every field except the resolved config JSON (what status, down and remove need). */
  async getSummary(names: string[]): Promise<Map<string, ServiceRecord>> {
    return this.getFields(names, SUMMARY_FIELDS);
  }

  /**
   * Like list(), without the config JSON: what /status reads. One round trip (a Lua script
   * reads the set and every hash and answers in one JSON string), sorted by name.
   */
  async listSummary(): Promise<ServiceRecord[]> {
    const json = (await this.run(LuaScripts.readAllServices, [Keys.services()], [Keys.servicePrefix(), ...SUMMARY_FIELDS])) as string;
    const [names, rows] = JSON.parse(json) as [string[] | object, Array<Array<string | false>>];
    const out: ServiceRecord[] = [];
    if (!Array.isArray(names)) return out; // no services: cjson encodes the empty list as {}
    names.forEach((name: string, i) => {
      const values = rows[i] ?? [];
      if (!values[0]) return; // no status: removed meanwhile
      const h: Record<string, string> = {};
      SUMMARY_FIELDS.forEach((f, j) => {
        const v = values[j];
        if (typeof v === 'string') h[f] = v;
      });
      out.push(parseServiceRecord(name, h));
    });
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async getFields(names: string[], fields: readonly string[]): Promise<Map<string, ServiceRecord>> {
    const out = new Map<string, ServiceRecord>();
    if (names.length === 0) return out;
    const pipe = this.redis.pipeline();
    for (const n of names) pipe.hmget(Keys.service(n), ...fields);
    const res = (await pipe.exec()) ?? [];
    names.forEach((n, i) => {
      const [err, values] = res[i] ?? [null, []];
      if (err) throw err;
      const v = values as Array<string | null>;
      if (v[0] === null || v[0] === undefined) return;
      const h: Record<string, string> = {};
      fields.forEach((f, j) => {
        const x = v[j];
        if (x !== null && x !== undefined) h[f] = x;
      });
      out.set(n, parseServiceRecord(n, h));
    });
    return out;
  }

  async names(): Promise<string[]> {
    return (await this.redis.smembers(Keys.services())).sort();
  }

  async list(): Promise<ServiceRecord[]> {
    const names = await this.names();
    const m = await this.getMany(names);
    return names.map((n) => m.get(n)).filter((r): r is ServiceRecord => r !== undefined);
  }

  /**
   * Move a service to `to` atomically. Throws MC_STATE_INVALID_TRANSITION
   * (naming both states), MC_STATE_FENCED (the service was reassigned) or
   * MC_ORCH_UNKNOWN_SERVICE. Returns the previous status.
   */
  async transition(name: string, to: ServiceState, options: TransitionOptions = {}): Promise<ServiceStatusName> {
    const fields: Record<string, string | number> = { ...options.fields };
    const clear = new Set(options.clear ?? []);
    for (const f of STATUS_DATA_FIELDS) clear.add(f);
    if (to.status === 'exited') {
      if (to.exitCode === null) clear.add('exit_code');
      else fields.exit_code = to.exitCode;
    }
    if (to.status === 'failed') {
      fields.reason = to.reason;
      clear.delete('reason');
    }
    if (to.status === 'blocked') {
      fields.blocked_by = to.by;
      clear.delete('blocked_by');
    }
    for (const f of Object.keys(fields)) clear.delete(f);
    const args: Array<string | number> = [
      name,
      to.status,
      allowedSources(to.status).join(','),
      options.epoch === undefined ? '' : String(options.epoch),
      options.host ?? '',
      STREAM_CAPS.events,
      new Date().toISOString(),
      options.detail ?? '',
      [...clear].join(','),
    ];
    for (const [k, v] of Object.entries(fields)) args.push(k, String(v));
    const res = (await this.run(LuaScripts.transition, [Keys.service(name), Keys.events()], args)) as Array<
      number | string
    >;
    const code = Number(res[0]);
    if (code === 1) return res[1] as ServiceStatusName;
    if (code === 0) {
      assertTransition(name, res[1] as ServiceStatusName, to.status);
      // The table says yes but the script said no: the tables disagree (a bug).
      throw new MonocoreError('MC_INTERNAL', `transition table mismatch for ${name}: ${String(res[1])} → ${to.status}`);
    }
    if (code === -1) {
      throw new MonocoreError(
        'MC_STATE_FENCED',
        `service "${name}" is now assigned to host "${String(res[2])}" epoch ${String(res[1])}; ` +
          `refused ${to.status} from host "${options.host ?? '?'}" epoch ${options.epoch ?? '?'}`,
        { service: name, epoch: res[1], host: res[2], to: to.status },
      );
    }
    throw new MonocoreError('MC_ORCH_UNKNOWN_SERVICE', `no service "${name}" is recorded`, { service: name });
  }

  /** Like transition(), but returns null instead of throwing when the move is not allowed or fenced. */
  async tryTransition(name: string, to: ServiceState, options: TransitionOptions = {}): Promise<ServiceStatusName | null> {
    try {
      return await this.transition(name, to, options);
    } catch (err) {
      if (err instanceof MonocoreError && ['MC_STATE_INVALID_TRANSITION', 'MC_STATE_FENCED', 'MC_ORCH_UNKNOWN_SERVICE'].includes(err.code)) {
        return null;
      }
      throw err;
    }
  }

  /** Set non-status fields of an existing service (metrics, pid); no event. */
  async update(name: string, fields: Record<string, string | number>): Promise<void> {
    const key = Keys.service(name);
    const flat = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
    if (flat.length === 0) return;
    // Only touch a service that still exists (a remove may have deleted it).
    await this.redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) return 1 end return 0",
      1,
      key,
      ...flat,
    );
  }

  /** Append a non-transition event (deployment or host level). */
  async emit(event: Omit<StateEvent, 'id' | 'time'>): Promise<string> {
    const f: string[] = ['kind', event.kind, 'time', new Date().toISOString()];
    if (event.service) f.push('service', event.service);
    if (event.host) f.push('host', event.host);
    if (event.deploymentId) f.push('deployment', event.deploymentId);
    if (event.detail) f.push('detail', event.detail);
    return (await this.redis.xadd(Keys.events(), 'MAXLEN', '~', STREAM_CAPS.events, '*', ...f)) as string;
  }

  /**
   * The events after `since` ('0' = from the start of the capped stream) that are there now,
   * at most `count`; never blocks (to wait for new ones, tail them: stream-tail.ts tailEvents).
   */
  async readEvents(since: string, count = 500): Promise<StateEvent[]> {
    const res = await this.redis.xread('COUNT', count, 'STREAMS', Keys.events(), since);
    if (!res) return [];
    const out: StateEvent[] = [];
    for (const [, entries] of res) for (const [id, fields] of entries) out.push(parseStateEvent(id, fields));
    return out;
  }

  /** The id of the newest event ('0' when there is none): read events after it to see only later ones. */
  async lastEventId(): Promise<string> {
    return lastStreamId(this.redis, Keys.events());
  }

  // --- leases (fencing) ------------------------------------------------------
  // `name` is a lease subject: a service name, or `sandbox:<id>` (keys.ts leaseRecordKey).

  /** 'held' | { holder, pttl } (someone else's lease is live) | 'stale' (the service was reassigned). */
  async acquireLease(
    name: string,
    host: string,
    epoch: number,
    ttlMs: number,
  ): Promise<'held' | 'stale' | { holder: string; pttlMs: number }> {
    const res = (await this.run(LuaScripts.acquireLease, [Keys.lease(name), leaseRecordKey(name)], [host, epoch, ttlMs])) as Array<
      number | string
    >;
    const code = Number(res[0]);
    if (code === 1) return 'held';
    if (code === -1) return 'stale';
    return { holder: String(res[1]), pttlMs: Number(res[2]) };
  }

  async renewLease(name: string, host: string, epoch: number, ttlMs: number): Promise<boolean> {
    return Number(await this.run(LuaScripts.renewLease, [Keys.lease(name), leaseRecordKey(name)], [host, epoch, ttlMs])) === 1;
  }

  async releaseLease(name: string, host: string, epoch: number): Promise<boolean> {
    return Number(await this.run(LuaScripts.releaseLease, [Keys.lease(name)], [`${host}:${epoch}`])) === 1;
  }

  /** Delete a service's state entirely (remove). */
  async delete(name: string): Promise<void> {
    await this.redis
      .multi()
      .del(Keys.service(name), Keys.lease(name), Keys.logs(name, 'stdout'), Keys.logs(name, 'stderr'))
      .srem(Keys.services(), name)
      .exec();
  }
}
