import type { SandboxRecord } from '@monocore/client';
import { formatDuration } from './status-table.js';

const age = (iso: string | undefined, now: number): string => {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) ? '-' : formatDuration(now - t);
};

/** Time left until `iso` (`-` when past or absent). */
const left = (iso: string | undefined, now: number): string => {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) || t <= now ? '-' : formatDuration(t - now);
};

/** One row per sandbox, oldest first: id, status, image, host, size, age, time left, why it ended. */
export function renderSandboxTable(sandboxes: readonly SandboxRecord[], now = Date.now()): string {
  if (sandboxes.length === 0) return 'no sandboxes (create one with `monocore sandbox create IMAGE`)\n';
  const header = ['SANDBOX', 'STATUS', 'IMAGE', 'HOST', 'CPUS', 'RAM', 'AGE', 'EXPIRES IN', 'REASON'];
  const rows = sandboxes.map((s) => [
    s.id,
    s.status,
    s.image,
    s.host ?? '-',
    String(s.cpus),
    `${s.ram}M`,
    age(s.created_at, now),
    s.status === 'running' || s.status === 'creating' ? left(s.expires_at, now) : '-',
    (s.reason ?? '').replace(/\s+/g, ' ').trim() || '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/** `key: value` lines of one sandbox, for `sandbox inspect` without --json. */
export function renderSandboxDetails(s: SandboxRecord, now = Date.now()): string {
  const env = Object.entries(s.env);
  const rows: Array<[string, string | undefined]> = [
    ['id', s.id],
    ['status', s.status],
    ['reason', s.reason],
    ['code', s.code],
    ['image', s.image_digest ? `${s.image} (${s.image_digest})` : s.image],
    ['host', s.host ?? undefined],
    ['cpus', String(s.cpus)],
    ['ram', `${s.ram} MiB`],
    ['network', s.network_allow ? `${s.network} (only ${s.network_allow.join(', ')})` : s.network],
    ['workdir', s.workdir],
    ['user', s.user],
    ['env', env.length > 0 ? env.map(([k, v]) => `${k}=${v}`).join(' ') : undefined],
    ['created', `${s.created_at} (${age(s.created_at, now)} ago)`],
    ['started', s.started_at],
    ['boot', s.boot ? `${s.boot.from} (${s.boot.reason})` : undefined],
    ['fork of', s.fork_of],
    ['paused', s.paused_at],
    ['last activity', s.last_activity_at],
    ['timeout', `${s.timeout_s}s (expires ${s.expires_at})`],
    ['idle timeout', s.idle_timeout_s !== null ? `${s.idle_timeout_s}s (then ${s.on_idle === 'pause' ? 'paused' : 'expired'})` : 'none'],
    ['ended', s.ended_at],
  ];
  const shown = rows.filter((r): r is [string, string] => r[1] !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${v}`).join('\n') + '\n';
}
