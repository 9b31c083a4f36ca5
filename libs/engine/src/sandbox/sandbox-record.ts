import { SANDBOX_DEFAULTS, type Sandbox } from '@monocore/api-schemas';
import { SANDBOX_STATUSES, type SandboxStatus } from './sandbox-state.js';

/**
 * The hash of one sandbox ({monocore}:sandbox:<id>), field by field. Times are
 * ms since the epoch. Written by the API (creation) and the worker that runs it
 * (status, pid, worker), always through SandboxStore.
 */
export interface SandboxRecord {
  id: string;
  status: SandboxStatus;
  host: string;
  /** Fencing epoch: bumped when it ends, so no host can renew or retake its lease. */
  epoch: number;
  image: string;
  imageDigest?: string;
  cpus: number;
  ramMib: number;
  /** Writable disk (records made before sandboxes had one: SANDBOX_DEFAULTS.disk). */
  diskMib: number;
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  network: 'none' | 'outbound';
  /** With outbound: only these destinations (normal form, EgressAllowList); absent = any public address. */
  allow?: string[];
  timeoutS: number;
  idleTimeoutS?: number;
  createdAt: number;
  startedAt?: number;
  endedAt?: number;
  lastActivityAt: number;
  reason?: string;
  code?: string;
  /** What idle_timeout_s does (default expire). */
  onIdle?: 'expire' | 'pause';
  pausedAt?: number;
  /** The sandbox this one was forked from. */
  forkOf?: string;
  /** Boot the kernel even when a template could be restored (docs/SNAPSHOTS.md). */
  cold?: boolean;
  /** How its VM started, once running. */
  boot?: { from: 'template' | 'cold' | 'paused' | 'fork'; reason: string };
  /** Host pid of its hypervisor. */
  pid?: number;
  /** `<pid>@<started_at>` of the worker process that runs it. */
  worker?: string;
}

const num = (v: string | undefined): number | undefined => (v === undefined || v === '' ? undefined : Number(v));

/**
 * The stored allow-list. Fails closed: a field that is not a JSON list of strings
 * becomes an empty list, which the VM's start refuses (MC_VM_EGRESS_ALLOW_INVALID),
 * rather than no list, which would open the way out to every address.
 */
function parseAllow(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  try {
    const list: unknown = JSON.parse(v);
    if (Array.isArray(list) && list.every((e) => typeof e === 'string')) return list as string[];
  } catch {
    // fall through
  }
  return [];
}

export function parseSandboxRecord(id: string, h: Record<string, string>): SandboxRecord {
  const status = (SANDBOX_STATUSES as readonly string[]).includes(h.status ?? '') ? (h.status as SandboxStatus) : 'creating';
  let env: Record<string, string> = {};
  try {
    env = h.env ? (JSON.parse(h.env) as Record<string, string>) : {};
  } catch {
    env = {};
  }
  const r: SandboxRecord = {
    id,
    status,
    host: h.host ?? '',
    epoch: num(h.epoch) ?? 1,
    image: h.image ?? '',
    cpus: num(h.cpus) ?? 1,
    ramMib: num(h.ram_mib) ?? 0,
    diskMib: num(h.disk_mib) ?? SANDBOX_DEFAULTS.disk,
    env,
    network: h.network === 'outbound' ? 'outbound' : 'none',
    timeoutS: num(h.timeout_s) ?? 0,
    createdAt: num(h.created_at) ?? 0,
    lastActivityAt: num(h.last_activity) ?? num(h.created_at) ?? 0,
  };
  const opt: Partial<SandboxRecord> = {
    imageDigest: h.image_digest || undefined,
    workdir: h.workdir || undefined,
    user: h.user || undefined,
    idleTimeoutS: num(h.idle_timeout_s),
    startedAt: num(h.started_at),
    endedAt: num(h.ended_at),
    allow: parseAllow(h.network_allow),
    reason: h.reason || undefined,
    code: h.code || undefined,
    pid: num(h.pid),
    worker: h.worker || undefined,
    cold: h.cold === '1' ? true : undefined,
    onIdle: h.on_idle === 'pause' ? 'pause' : undefined,
    pausedAt: num(h.paused_at),
    forkOf: h.fork_of || undefined,
    boot: h.boot_from === 'template' || h.boot_from === 'cold' || h.boot_from === 'paused' || h.boot_from === 'fork' ? { from: h.boot_from, reason: h.boot_reason ?? '' } : undefined,
  };
  for (const [k, v] of Object.entries(opt)) if (v !== undefined) (r as unknown as Record<string, unknown>)[k] = v;
  return r;
}

/** The hash fields of a new record. */
export function sandboxRecordFields(r: SandboxRecord): Record<string, string | number> {
  const f: Record<string, string | number> = {
    id: r.id,
    status: r.status,
    host: r.host,
    epoch: r.epoch,
    image: r.image,
    cpus: r.cpus,
    ram_mib: r.ramMib,
    disk_mib: r.diskMib,
    env: JSON.stringify(r.env),
    network: r.network,
    timeout_s: r.timeoutS,
    created_at: r.createdAt,
    last_activity: r.lastActivityAt,
  };
  if (r.workdir !== undefined) f.workdir = r.workdir;
  if (r.user !== undefined) f.user = r.user;
  if (r.idleTimeoutS !== undefined) f.idle_timeout_s = r.idleTimeoutS;
  if (r.allow !== undefined) f.network_allow = JSON.stringify(r.allow);
  if (r.cold) f.cold = '1';
  if (r.onIdle === 'pause') f.on_idle = 'pause';
  if (r.forkOf !== undefined) f.fork_of = r.forkOf;
  if (r.imageDigest !== undefined) f.image_digest = r.imageDigest;
  return f;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The record as GET /sandboxes/:id shows it (@monocore/api-schemas SandboxSchema). */
export function toSandbox(r: SandboxRecord): Sandbox {
  const s: Sandbox = {
    id: r.id,
    status: r.status,
    host: r.host || null,
    image: r.image,
    cpus: r.cpus,
    ram: r.ramMib,
    disk: r.diskMib,
    env: r.env,
    network: r.network,
    ...(r.allow !== undefined ? { network_allow: r.allow } : {}),
    timeout_s: r.timeoutS,
    idle_timeout_s: r.idleTimeoutS ?? null,
    on_idle: r.onIdle ?? 'expire',
    created_at: iso(r.createdAt),
    expires_at: iso(r.createdAt + r.timeoutS * 1000),
    last_activity_at: iso(r.lastActivityAt),
  };
  if (r.imageDigest) s.image_digest = r.imageDigest;
  if (r.workdir) s.workdir = r.workdir;
  if (r.user) s.user = r.user;
  if (r.startedAt !== undefined) s.started_at = iso(r.startedAt);
  if (r.endedAt !== undefined) s.ended_at = iso(r.endedAt);
  if (r.reason) s.reason = r.reason;
  if (r.code) s.code = r.code;
  if (r.boot) s.boot = r.boot;
  if (r.status === 'paused' && r.pausedAt !== undefined) s.paused_at = iso(r.pausedAt);
  if (r.forkOf) s.fork_of = r.forkOf;
  return s;
}
