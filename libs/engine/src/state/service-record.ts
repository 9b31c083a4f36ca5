import type { SandboxStatus } from '@monocore/api-schemas';
import type { ServiceStatusName } from './service-state.js';

/**
 * One service as /status shows it: its Redis record without the fields only the
 * worker needs (resolved config, dependency list, fencing epoch, reservations).
 */
export type ServiceStatus = Omit<ServiceRecord, 'runningHash' | 'config' | 'dependsOn' | 'epoch' | 'cpus' | 'ramMib'>;

/** One entry of the `{monocore}:events` stream. */
export interface StateEvent {
  /** Redis stream id; pass it back as `since` to resume. */
  id: string;
  time: string;
  /**
   * 'transition' for service state changes; 'deployment' for request-level events; 'host' for host
   * (un)registration; 'sandbox' for sandbox state changes (`sandbox`, `from`, `to`, `detail` = the reason).
   */
  kind: 'transition' | 'deployment' | 'host' | 'sandbox';
  service?: string;
  sandbox?: string;
  /** A service status, or a sandbox status for kind 'sandbox'. */
  from?: ServiceStatusName | SandboxStatus;
  to?: ServiceStatusName | SandboxStatus;
  host?: string;
  deploymentId?: string;
  detail?: string;
}

/** The raw hash of one service ({monocore}:service:<name>), field by field. */
export interface ServiceRecord {
  name: string;
  group?: string;
  /** Desired state: what the last up/down asked for. */
  desired: 'running' | 'stopped';
  /** Actual state. */
  status: ServiceStatusName;
  host?: string;
  pid?: number;
  /** Boot attempts in the current deployment. */
  attempts: number;
  /** Restarts after unexpected exits since the last deployment. */
  restarts: number;
  startedAt?: string;
  exitCode?: number;
  /** failed(reason) */
  reason?: string;
  /** blocked(by) */
  blockedBy?: string;
  lastError?: string;
  /** failed: the last lines of the service's output. */
  logTail?: string;
  cpuPercent?: number;
  memoryBytes?: number;
  deploymentId?: string;
  configHash?: string;
  /** Hash of the config the VM actually runs (set by the worker at boot). */
  runningHash?: string;
  /** JSON of the resolved service the worker boots. */
  config?: string;
  image?: string;
  /** Names of the services it depends on. */
  dependsOn: string[];
  epoch: number;
  cpus: number;
  ramMib: number;
  updatedAt?: string;
}

const num = (v: string | undefined): number | undefined => (v === undefined || v === '' ? undefined : Number(v));

export function parseServiceRecord(name: string, h: Record<string, string>): ServiceRecord {
  return {
    name,
    group: h.group || undefined,
    desired: h.desired === 'stopped' ? 'stopped' : 'running',
    status: (h.status || 'pending') as ServiceStatusName,
    host: h.host || undefined,
    pid: num(h.pid),
    attempts: num(h.attempts) ?? 0,
    restarts: num(h.restarts) ?? 0,
    startedAt: h.started_at || undefined,
    exitCode: num(h.exit_code),
    reason: h.reason || undefined,
    blockedBy: h.blocked_by || undefined,
    lastError: h.last_error || undefined,
    logTail: h.log_tail || undefined,
    cpuPercent: num(h.cpu_percent),
    memoryBytes: num(h.memory_bytes),
    deploymentId: h.deployment_id || undefined,
    configHash: h.config_hash || undefined,
    runningHash: h.running_hash || undefined,
    config: h.config || undefined,
    image: h.image || undefined,
    dependsOn: h.depends_on ? (JSON.parse(h.depends_on) as string[]) : [],
    epoch: num(h.epoch) ?? 0,
    cpus: num(h.cpus) ?? 1,
    ramMib: num(h.ram_mib) ?? 0,
    updatedAt: h.updated_at || undefined,
  };
}

export function toServiceStatus(r: ServiceRecord): ServiceStatus {
  const s: ServiceStatus = {
    name: r.name,
    status: r.status,
    desired: r.desired,
    attempts: r.attempts,
    restarts: r.restarts,
  };
  const opt: Partial<ServiceStatus> = {
    group: r.group,
    host: r.host,
    pid: r.status === 'running' || r.status === 'starting' || r.status === 'stopping' ? r.pid : undefined,
    startedAt: r.startedAt,
    exitCode: r.exitCode,
    reason: r.status === 'failed' ? r.reason : undefined,
    blockedBy: r.status === 'blocked' ? r.blockedBy : undefined,
    lastError: r.lastError,
    logTail: r.status === 'failed' ? r.logTail : undefined,
    cpuPercent: r.status === 'running' ? r.cpuPercent : undefined,
    memoryBytes: r.status === 'running' ? r.memoryBytes : undefined,
    deploymentId: r.deploymentId,
    configHash: r.configHash,
    image: r.image,
    updatedAt: r.updatedAt,
  };
  for (const [k, v] of Object.entries(opt)) if (v !== undefined) (s as unknown as Record<string, unknown>)[k] = v;
  return s;
}

/** Parses one XREAD/XRANGE entry of the events stream. */
export function parseStateEvent(id: string, fields: string[]): StateEvent {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const e: StateEvent = { id, time: f.time ?? '', kind: (f.kind as StateEvent['kind']) ?? 'transition' };
  if (f.service) e.service = f.service;
  if (f.sandbox) e.sandbox = f.sandbox;
  if (f.from) e.from = f.from as ServiceStatusName | SandboxStatus;
  if (f.to) e.to = f.to as ServiceStatusName | SandboxStatus;
  if (f.host) e.host = f.host;
  if (f.deployment) e.deploymentId = f.deployment;
  if (f.detail) e.detail = f.detail;
  return e;
}
