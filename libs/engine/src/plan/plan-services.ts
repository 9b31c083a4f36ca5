import { MonocoreError } from '../errors/index.js';
import type { MonocoreConfig } from '../config/index.js';

export interface PlanSelection {
  /** This group's services (and, per `closure`, what they need or what needs them). */
  group?: string;
  /** These services (and, per `closure`, …). With `group`, the union. */
  services?: readonly string[];
  /**
   * What else a group/service selection takes along, transitively, across groups:
   * - `dependencies` (default, for up): everything the selection depends on;
   * - `dependents` (for down/remove): everything that depends on the selection,
   *   so nothing keeps running on top of a stopped dependency;
   * - `none`: exactly the selection (edges to services outside it are ignored).
   */
  closure?: 'dependencies' | 'dependents' | 'none';
}

export interface ServicePlan {
  /** Topological start order: each service after everything it depends on; ties in config order. */
  order: string[];
  /** Start waves: every service of level n depends only on services of levels < n, so a level can start in parallel. */
  levels: string[][];
  /** Stop order: the reverse of `order` (dependents stop before what they depend on). */
  downOrder: string[];
  /** The selected services (the selection with its closure), in config order. */
  selected: string[];
}

/**
 * Plans the start/stop order of a validated config, or of the subgraph a group or
 * a list of services needs. Deterministic: the same config and selection give the
 * same plan. A cycle (possible only for a config that skipped validateConfig) is
 * reported as MC_CONFIG_INVALID rather than looping.
 */
export function planServices(config: MonocoreConfig, selection: PlanSelection = {}): ServicePlan {
  const position = new Map(config.service.map((s, i) => [s.name, i]));
  const depsOf = new Map(config.service.map((s) => [s.name, s.depends_on]));

  // --- selection, closed over depends_on ------------------------------------------
  let roots: string[];
  if (selection.group === undefined && selection.services === undefined) {
    roots = config.service.map((s) => s.name);
  } else {
    roots = [];
    if (selection.group !== undefined) {
      if (!config.group.some((g) => g.name === selection.group)) {
        throw new MonocoreError('MC_PLAN_UNKNOWN_SELECTION', `unknown group "${selection.group}"`, { group: selection.group });
      }
      roots.push(...config.service.filter((s) => s.group === selection.group).map((s) => s.name));
    }
    for (const name of selection.services ?? []) {
      if (!position.has(name)) {
        throw new MonocoreError('MC_PLAN_UNKNOWN_SELECTION', `unknown service "${name}"`, { service: name });
      }
      roots.push(name);
    }
  }
  const dependentsOf = new Map<string, string[]>(config.service.map((s) => [s.name, []]));
  for (const s of config.service) {
    for (const dep of s.depends_on) {
      const list = dependentsOf.get(dep);
      if (!list) {
        throw new MonocoreError('MC_CONFIG_INVALID', `service "${s.name}" depends on unknown service "${dep}"`, {
          issues: [{ path: `service[${position.get(s.name)}].depends_on`, message: `unknown service "${dep}"` }],
        });
      }
      list.push(s.name);
    }
  }
  const closure = selection.closure ?? 'dependencies';
  const next = closure === 'dependencies' ? depsOf : closure === 'dependents' ? dependentsOf : new Map<string, string[]>();
  const selectedSet = new Set<string>();
  const pending = [...roots];
  while (pending.length > 0) {
    const name = pending.pop() as string;
    if (selectedSet.has(name)) continue;
    selectedSet.add(name);
    pending.push(...(next.get(name) ?? []));
  }
  const byConfigOrder = (a: string, b: string) => (position.get(a) ?? 0) - (position.get(b) ?? 0);
  const selected = [...selectedSet].sort(byConfigOrder);

  // --- levels: level(s) = 0 without deps, else 1 + max level of its deps ----------------
  // Kahn's algorithm by waves; whatever never becomes ready is on a cycle.
  // Only edges inside the selection order it (with `dependents`/`none` a dependency may be outside).
  const remaining = new Map(selected.map((n) => [n, new Set((depsOf.get(n) ?? []).filter((d) => selectedSet.has(d)))]));
  const levels: string[][] = [];
  while (remaining.size > 0) {
    const ready = [...remaining].filter(([, deps]) => deps.size === 0).map(([n]) => n).sort(byConfigOrder);
    if (ready.length === 0) {
      const stuck = [...remaining.keys()].sort(byConfigOrder);
      throw new MonocoreError('MC_CONFIG_INVALID', `dependency cycle among: ${stuck.join(', ')}`, {
        issues: [{ path: '', message: `dependency cycle among: ${stuck.join(', ')}` }],
      });
    }
    levels.push(ready);
    for (const n of ready) remaining.delete(n);
    for (const deps of remaining.values()) for (const n of ready) deps.delete(n);
  }
  const order = levels.flat();
  return { order, levels, downOrder: [...order].reverse(), selected };
}
