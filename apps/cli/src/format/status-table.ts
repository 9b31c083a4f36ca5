/** The fields of a service the CLI shows (the API's ServiceStatus). */
export interface ServiceRow {
  name: string;
  group?: string;
  status: string;
  desired?: string;
  host?: string;
  pid?: number;
  restarts?: number;
  attempts?: number;
  startedAt?: string;
  exitCode?: number;
  reason?: string;
  blockedBy?: string;
  lastError?: string;
}

/** `exited(1)`, `blocked(db)`, else the status itself. */
export function statusLabel(s: ServiceRow): string {
  if (s.status === 'exited') return `exited(${s.exitCode ?? '?'})`;
  if (s.status === 'blocked' && s.blockedBy) return `blocked(${s.blockedBy})`;
  return s.status;
}

/** 3s, 4m05s, 2h03m, 3d04h */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

function uptime(s: ServiceRow, now: number): string {
  if (s.status !== 'running' || !s.startedAt) return '-';
  const t = Date.parse(s.startedAt);
  return Number.isNaN(t) ? '-' : formatDuration(now - t);
}

function lastError(s: ServiceRow): string {
  const text = s.lastError ?? s.reason ?? (s.blockedBy ? `dependency ${s.blockedBy} failed` : '');
  return text.replace(/\s+/g, ' ').trim() || '-';
}

/** A fixed-width table, one row per service, sorted by group then name. */
export function renderStatusTable(services: readonly ServiceRow[], now = Date.now(), width = process.stdout.columns ?? 160): string {
  if (services.length === 0) return 'no services (deploy some with `monocore up -f monocore.toml`)\n';
  const header = ['SERVICE', 'GROUP', 'STATUS', 'HOST', 'PID', 'RESTARTS', 'UPTIME', 'EXIT', 'LAST ERROR'];
  const sorted = [...services].sort((a, b) => (a.group ?? '').localeCompare(b.group ?? '') || a.name.localeCompare(b.name));
  const rows = sorted.map((s) => [
    s.name,
    s.group ?? '-',
    statusLabel(s),
    s.host ?? '-',
    s.pid !== undefined ? String(s.pid) : '-',
    String(s.restarts ?? 0),
    uptime(s, now),
    s.exitCode !== undefined ? String(s.exitCode) : '-',
    lastError(s),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fixed = widths.slice(0, -1).reduce((a, b) => a + b + 2, 0);
  const errWidth = Math.max(20, width - fixed);
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? (c.length > errWidth ? `${c.slice(0, errWidth - 1)}…` : c) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}
