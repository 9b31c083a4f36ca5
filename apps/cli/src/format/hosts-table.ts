import { formatDuration } from './status-table.js';

/** The fields of a host the CLI shows (the API's HostStatus). */
export interface HostRow {
  id: string;
  alive: boolean;
  version?: string;
  backends: string[];
  accel?: string;
  cpus: number;
  ramMib: number;
  usedCpus: number;
  usedRamMib: number;
  freeCpus: number;
  freeRamMib: number;
  allocations: Record<string, unknown>;
  spares?: { count: number; ramMib: number };
  heartbeatAgeMs?: number;
}

/** One row per host, sorted by id: capacity as used/total, free resources, spares held, backend, acceleration, version, heartbeat age. */
export function renderHostsTable(hosts: readonly HostRow[]): string {
  if (hosts.length === 0) return 'no worker hosts registered (start one with `monocore serve` or `monocore-worker`)\n';
  const header = ['HOST', 'STATE', 'BACKEND', 'ACCEL', 'VERSION', 'CPUS', 'FREE CPUS', 'MEMORY MiB', 'FREE MiB', 'SPARES', 'SERVICES', 'HEARTBEAT'];
  const rows = [...hosts]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((h) => [
      h.id,
      h.alive ? 'alive' : 'dead',
      h.backends.join(',') || '-',
      h.accel ?? '-',
      h.version ?? '-',
      `${h.usedCpus}/${h.cpus}`,
      String(h.freeCpus),
      `${h.usedRamMib}/${h.ramMib}`,
      String(h.freeRamMib),
      h.spares && h.spares.count > 0 ? `${h.spares.count} (${h.spares.ramMib} MiB)` : '-',
      String(Object.keys(h.allocations).length),
      h.heartbeatAgeMs !== undefined ? `${formatDuration(h.heartbeatAgeMs)} ago` : '-',
    ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}
