import type { Redis } from 'ioredis';
import { MonocoreError } from '../errors/index.js';
import { Keys, STREAM_CAPS } from '../state/keys.js';
import { LuaScripts } from '../state/scripts/lua-scripts.js';
import { StateStore } from '../state/state-store.js';
import { parseSandboxRecord, sandboxRecordFields, type SandboxRecord } from './sandbox-record.js';
import { assertSandboxTransition, isEndedSandboxStatus, sandboxSources, type SandboxStatus } from './sandbox-state.js';

/** How long an ended sandbox stays readable (GET /sandboxes/:id) by default: 1 hour. */
export const DEFAULT_SANDBOX_RETENTION_MS = 3600_000;

export interface SandboxTransitionOptions {
  /** Fencing: refuse unless the sandbox still has this epoch. */
  epoch?: number;
  /** Fencing: refuse unless the sandbox is still on this host. */
  host?: string;
  /** Extra hash fields set in the same atomic step. */
  fields?: Record<string, string | number>;
  /** The event's detail; for an ended status also recorded as `reason`. */
  detail?: string;
}

/**
 * Sandboxes in Redis. Every status change goes through one Lua script
 * (sandbox-transition-3.lua) that checks the state machine and fencing, ends
 * the lease's validity and releases capacity when the sandbox ends, and
 * appends the change to the events stream, atomically.
 */
export class SandboxStore {
  readonly #state: StateStore;

  constructor(
    readonly redis: Redis,
    readonly retentionMs: number = DEFAULT_SANDBOX_RETENTION_MS,
  ) {
    this.#state = new StateStore(redis);
  }

  /** Records a new sandbox placed on `host`, its capacity there, and its `creating` event, in one MULTI. */
  async create(r: SandboxRecord): Promise<void> {
    const now = new Date(r.createdAt).toISOString();
    await this.redis
      .multi()
      .hset(Keys.sandbox(r.id), { ...sandboxRecordFields(r), updated_at: now })
      .zadd(Keys.sandboxes(), r.createdAt, r.id)
      .hset(Keys.hostAlloc(r.host), `sandbox:${r.id}`, `${r.cpus}:${r.ramMib}`)
      .xadd(Keys.events(), 'MAXLEN', '~', STREAM_CAPS.events, '*', 'kind', 'sandbox', 'time', now, 'sandbox', r.id, 'to', r.status, 'host', r.host, 'detail', `image ${r.image}`)
      .exec();
  }

  async get(id: string): Promise<SandboxRecord | null> {
    const h = await this.redis.hgetall(Keys.sandbox(id));
    return Object.keys(h).length === 0 ? null : parseSandboxRecord(id, h);
  }

  async require(id: string): Promise<SandboxRecord> {
    const r = await this.get(id);
    if (!r) throw notFound(id);
    return r;
  }

  /** Every sandbox still recorded, oldest first (ids whose record expired are dropped from the index). */
  async list(): Promise<SandboxRecord[]> {
    const ids = await this.redis.zrange(Keys.sandboxes(), 0, -1);
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(Keys.sandbox(id));
    const res = (await pipe.exec()) ?? [];
    const out: SandboxRecord[] = [];
    const gone: string[] = [];
    ids.forEach((id, i) => {
      const h = (res[i]?.[1] ?? {}) as Record<string, string>;
      if (Object.keys(h).length === 0) gone.push(id);
      else out.push(parseSandboxRecord(id, h));
    });
    if (gone.length > 0) await this.redis.zrem(Keys.sandboxes(), ...gone);
    return out;
  }

  /** Records a call's activity (idle_timeout_s counts from it); nothing for a sandbox that is gone. */
  async touch(id: string, at = Date.now()): Promise<void> {
    await this.redis.eval(
      "if redis.call('HGET', KEYS[1], 'status') == 'running' then redis.call('HSET', KEYS[1], 'last_activity', ARGV[1]) end return 0",
      1,
      Keys.sandbox(id),
      String(at),
    );
  }

  /**
   * Moves a sandbox to `to` atomically. Throws MC_STATE_INVALID_TRANSITION
   * (naming both states), MC_STATE_FENCED or MC_SANDBOX_NOT_FOUND. Returns the
   * previous status.
   */
  async transition(id: string, host: string, to: SandboxStatus, options: SandboxTransitionOptions = {}): Promise<SandboxStatus> {
    const ended = isEndedSandboxStatus(to);
    const now = Date.now();
    const fields: Record<string, string | number> = { ...options.fields };
    if (ended) {
      fields.ended_at ??= now;
      if (options.detail) fields.reason ??= options.detail;
    }
    const args: Array<string | number> = [
      id,
      to,
      sandboxSources(to).join(','),
      options.epoch === undefined ? '' : String(options.epoch),
      options.host ?? '',
      STREAM_CAPS.events,
      new Date(now).toISOString(),
      options.detail ?? '',
      ended ? '1' : to === 'paused' ? 'p' : '0',
      host,
      this.retentionMs,
    ];
    for (const [k, v] of Object.entries(fields)) args.push(k, String(v));
    const res = (await this.#state.run(LuaScripts.sandboxTransition, [Keys.sandbox(id), Keys.events(), Keys.hostAlloc(host)], args)) as Array<number | string>;
    const code = Number(res[0]);
    if (code === 1) return res[1] as SandboxStatus;
    if (code === 0) {
      assertSandboxTransition(id, res[1] as SandboxStatus, to);
      throw new MonocoreError('MC_INTERNAL', `sandbox transition table mismatch for ${id}: ${String(res[1])} → ${to}`);
    }
    if (code === -1) {
      throw new MonocoreError(
        'MC_STATE_FENCED',
        `sandbox ${id} is now at epoch ${String(res[1])} on host "${String(res[2])}"; refused ${to} from host "${options.host ?? '?'}" epoch ${options.epoch ?? '?'}`,
        { sandbox: id, epoch: res[1], host: res[2], to },
      );
    }
    throw notFound(id);
  }

  /** Like transition(), but null instead of throwing when the move is not allowed, fenced, or the sandbox is gone. */
  async tryTransition(id: string, host: string, to: SandboxStatus, options: SandboxTransitionOptions = {}): Promise<SandboxStatus | null> {
    try {
      return await this.transition(id, host, to, options);
    } catch (err) {
      if (err instanceof MonocoreError && ['MC_STATE_INVALID_TRANSITION', 'MC_STATE_FENCED', 'MC_SANDBOX_NOT_FOUND'].includes(err.code)) return null;
      throw err;
    }
  }

  /** Set non-status fields of a live sandbox (pid, worker, image digest); no event. */
  async update(id: string, fields: Record<string, string | number>): Promise<void> {
    const flat = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
    if (flat.length === 0) return;
    await this.redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) return 1 end return 0",
      1,
      Keys.sandbox(id),
      ...flat,
    );
  }
}

export function notFound(id: string): MonocoreError {
  return new MonocoreError('MC_SANDBOX_NOT_FOUND', `no sandbox ${id} (never created, or it ended longer ago than the retention period)`, { sandbox: id });
}
