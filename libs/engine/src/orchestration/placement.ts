import { MonocoreError } from '../errors/index.js';
import type { HostCapacity } from '../state/host-registry.js';

export interface PlacementRequest {
  name: string;
  group?: string;
  cpus: number;
  ramMib: number;
  /** Where it runs now, if anywhere (kept there when it still fits: no needless moves). */
  currentHost?: string;
}

/**
 * Place services on hosts with free capacity. A group shares a network, so all
 * its services go to one host (`groupHosts` pins groups that already have
 * members running somewhere). Units (a group, or a service without group) are
 * placed largest first on the host with the most free RAM that fits them —
 * spreading load across hosts.
 *
 * `hosts` capacities must already exclude the requested services' own current
 * allocations (they are being re-placed).
 */
export function placeServices(
  requests: readonly PlacementRequest[],
  hosts: readonly HostCapacity[],
  groupHosts: ReadonlyMap<string, string> = new Map(),
): Map<string, string> {
  if (hosts.length === 0) {
    throw new MonocoreError('MC_ORCH_NO_HOSTS', 'no worker host is registered (start monocore-worker or monocore serve)');
  }
  const free = new Map(hosts.map((h) => [h.id, { cpus: h.freeCpus, ram: h.freeRamMib }]));
  const units = new Map<string, PlacementRequest[]>();
  for (const r of requests) {
    const key = r.group ? `group:${r.group}` : `service:${r.name}`;
    const list = units.get(key) ?? [];
    list.push(r);
    units.set(key, list);
  }
  const sized = [...units.entries()].map(([key, members]) => ({
    key,
    members,
    cpus: members.reduce((a, m) => a + m.cpus, 0),
    ram: members.reduce((a, m) => a + m.ramMib, 0),
  }));
  sized.sort((a, b) => b.ram - a.ram || b.cpus - a.cpus || a.key.localeCompare(b.key));

  const out = new Map<string, string>();
  for (const u of sized) {
    const fits = (id: string): boolean => {
      const f = free.get(id);
      return f !== undefined && f.cpus >= u.cpus && f.ram >= u.ram;
    };
    const group = u.members[0]?.group;
    const pinned = group ? groupHosts.get(group) : undefined;
    const current = u.members.every((m) => m.currentHost && m.currentHost === u.members[0]?.currentHost)
      ? u.members[0]?.currentHost
      : undefined;
    let chosen: string | undefined;
    if (pinned !== undefined) {
      if (!fits(pinned)) throw noCapacity(u.key, u.cpus, u.ram, free, `its group runs on host "${pinned}"`);
      chosen = pinned;
    } else if (current !== undefined && fits(current)) {
      chosen = current;
    } else {
      let best: string | undefined;
      for (const h of hosts) {
        if (!fits(h.id)) continue;
        const f = free.get(h.id)!;
        const b = best === undefined ? undefined : free.get(best)!;
        if (!b || f.ram > b.ram || (f.ram === b.ram && f.cpus > b.cpus)) best = h.id;
      }
      if (best === undefined) throw noCapacity(u.key, u.cpus, u.ram, free);
      chosen = best;
    }
    const f = free.get(chosen)!;
    f.cpus -= u.cpus;
    f.ram -= u.ram;
    for (const m of u.members) out.set(m.name, chosen);
  }
  return out;
}

function noCapacity(
  unit: string,
  cpus: number,
  ram: number,
  free: Map<string, { cpus: number; ram: number }>,
  why?: string,
): MonocoreError {
  const hosts = Object.fromEntries([...free].map(([id, f]) => [id, { freeCpus: f.cpus, freeRamMib: f.ram }]));
  const what = unit.replace(':', ' "') + '"';
  return new MonocoreError(
    'MC_ORCH_NO_CAPACITY',
    `no host has ${cpus} cpus and ${ram} MiB free for ${what}${why ? ` (${why})` : ''}; free: ` +
      Object.entries(hosts)
        .map(([id, f]) => `${id} ${f.freeCpus} cpus/${f.freeRamMib} MiB`)
        .join(', '),
    { unit, cpus, ramMib: ram, hosts },
  );
}
