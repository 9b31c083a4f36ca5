import { closestMatch, formatPath, type ConfigIssue, type PathSegment } from './config-issue.js';
import { tryParseEnvVar } from './env-var.js';
import { ConfigLimits } from './limits.js';
import { tryParsePortMapping } from './port-mapping.js';
import { egressAllowListProblems } from '../vm/egress-allow-list.js';
import { isUnder, joinUnder, tryParseVolumeMapping } from './volume-mapping.js';

/**
 * Cross-field rules of monocore.toml. They run on the raw input next to the zod
 * schema (not after it), reading only what has the right shape, so one run
 * reports every problem: a malformed port elsewhere does not hide a cycle.
 */

type Raw = Record<string, unknown>;

const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
/** The entries of an array that are strings, with their index. */
const strings = (v: unknown): { index: number; value: string }[] =>
  Array.isArray(v)
    ? v.flatMap((value: unknown, index) => (typeof value === 'string' ? [{ index, value }] : []))
    : [];
const objects = (v: unknown): { index: number; value: Raw }[] =>
  Array.isArray(v) ? v.flatMap((value: unknown, index) => (isObject(value) ? [{ index, value }] : [])) : [];

interface GroupInfo {
  index: number;
  volumes: Map<string, string | undefined>; // name → base path (when valid)
  envs: Set<string>;
}

export function semanticIssues(input: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: PathSegment[], message: string) => issues.push({ path: formatPath(path), message });
  if (!isObject(input)) return issues;

  // Oversized lists are already errors in the schema; skipping the cross-field rules
  // for them keeps a hostile REST body from costing quadratic time or deep recursion.
  const tooLong = (v: unknown) => Array.isArray(v) && v.length > ConfigLimits.maxListLength;
  if (tooLong(input.service) || tooLong(input.group)) return issues;
  const services = objects(input.service);
  const groups = objects(input.group);

  // Host directories shared across groups would be a channel around group isolation:
  // a host path may overlap another only when both belong to the same group.
  const hostShares: { path: string; owner: string; label: string; where: string }[] = [];
  const claimHost = (path: string, owner: string, label: string, where: PathSegment[]) => {
    const clash = hostShares.find((h) => h.owner !== owner && (isUnder(h.path, path) || isUnder(path, h.path)));
    if (clash) {
      add(where, `host path "${path}" overlaps "${clash.path}" of ${clash.where} (${clash.label}); a host directory may only be shared inside one group`);
    } else hostShares.push({ path, owner, label, where: formatPath(where) });
  };

  // --- groups: unique names, unique volume/env names inside each ------------------
  const groupInfo = new Map<string, GroupInfo>();
  for (const { index, value: g } of groups) {
    const name = str(g.name);
    const info: GroupInfo = { index, volumes: new Map(), envs: new Set() };
    for (const { index: vi, value: v } of objects(g.volume)) {
      const vname = str(v.name);
      if (vname === undefined) continue;
      if (info.volumes.has(vname)) add(['group', index, 'volume', vi, 'name'], `duplicate group volume name "${vname}"`);
      else {
        const base = str(v.path);
        const ok = base !== undefined && tryParseVolumeMapping(base).ok && !base.includes(':');
        info.volumes.set(vname, ok ? base : undefined);
        if (ok && name !== undefined) claimHost(base, `group:${name}`, `group "${name}"`, ['group', index, 'volume', vi, 'path']);
      }
    }
    for (const { index: ei, value: e } of objects(g.env)) {
      const ename = str(e.name);
      if (ename === undefined) continue;
      if (info.envs.has(ename)) add(['group', index, 'env', ei, 'name'], `duplicate group env name "${ename}"`);
      else info.envs.add(ename);
      checkDuplicateEnvKeys(e.envs, ['group', index, 'env', ei, 'envs'], add);
    }
    groupNetworkIssues(g, index, add);
    if (name === undefined) continue;
    const first = groupInfo.get(name);
    if (first) add(['group', index, 'name'], `duplicate group name "${name}" (first defined at group[${first.index}])`);
    else groupInfo.set(name, info);
  }

  // --- services: unique names ---------------------------------------------------------
  const serviceIndex = new Map<string, number>();
  for (const { index, value: s } of services) {
    const name = str(s.name);
    if (name === undefined) continue;
    const first = serviceIndex.get(name);
    if (first !== undefined) add(['service', index, 'name'], `duplicate service name "${name}" (first defined at service[${first}])`);
    else serviceIndex.set(name, index);
  }
  const serviceNames = [...serviceIndex.keys()];
  const groupNames = [...groupInfo.keys()];
  const hint = (word: string, candidates: string[]) => {
    const m = closestMatch(word, candidates);
    return m !== undefined && m !== word ? ` (did you mean "${m}"?)` : '';
  };

  const hostPorts = new Map<number, { service: string; index: number }>();
  for (const { index, value: s } of services) {
    const name = str(s.name) ?? `service[${index}]`;

    // group reference
    const groupName = str(s.group);
    const group = groupName === undefined ? undefined : groupInfo.get(groupName);
    const owner = groupName !== undefined ? `group:${groupName}` : `service:${name}`;
    const ownerLabel = groupName !== undefined ? `group "${groupName}"` : `service "${name}", no group`;
    if (groupName !== undefined && group === undefined) {
      add(['service', index, 'group'], `unknown group "${groupName}"${hint(groupName, groupNames)}`);
    }

    // depends_on
    const seenDeps = new Set<string>();
    for (const { index: di, value: dep } of strings(s.depends_on)) {
      const path = ['service', index, 'depends_on', di];
      if (seenDeps.has(dep)) add(path, `duplicate dependency "${dep}"`);
      seenDeps.add(dep);
      if (dep === str(s.name)) add(path, `service "${dep}" depends on itself`);
      else if (!serviceIndex.has(dep)) add(path, `unknown service "${dep}"${hint(dep, serviceNames)}`);
    }

    // group_envs
    const groupEnvs = strings(s.group_envs);
    if (groupEnvs.length > 0 && groupName === undefined) {
      add(['service', index, 'group_envs'], 'group_envs needs the service to belong to a group (set "group")');
    } else if (group !== undefined && groupName !== undefined) {
      const seen = new Set<string>();
      for (const { index: ei, value: env } of groupEnvs) {
        const path = ['service', index, 'group_envs', ei];
        if (seen.has(env)) add(path, `duplicate group env reference "${env}"`);
        seen.add(env);
        if (!group.envs.has(env)) add(path, `group "${groupName}" has no env set "${env}"${hint(env, [...group.envs])}`);
      }
    }

    // volumes: own ones, then group ones; no guest path mounted twice
    const guestPaths = new Map<string, string>();
    const claimGuest = (guest: string, where: PathSegment[]) => {
      const first = guestPaths.get(guest);
      if (first !== undefined) add(where, `guest path "${guest}" is already mounted by ${first}`);
      else guestPaths.set(guest, formatPath(where));
    };
    for (const { index: vi, value: v } of strings(s.volumes)) {
      const parsed = tryParseVolumeMapping(v);
      if (!parsed.ok) continue;
      claimGuest(parsed.value.guest, ['service', index, 'volumes', vi]);
      claimHost(parsed.value.host, owner, ownerLabel, ['service', index, 'volumes', vi]);
    }
    const groupVolumes = objects(s.group_volumes);
    if (groupVolumes.length > 0 && groupName === undefined) {
      add(['service', index, 'group_volumes'], 'group_volumes needs the service to belong to a group (set "group")');
    } else if (group !== undefined && groupName !== undefined) {
      // The same group volume may be mounted more than once (different subdirectories);
      // only the guest paths must differ.
      for (const { index: vi, value: gv } of groupVolumes) {
        const vname = str(gv.name);
        if (vname === undefined) continue;
        const path: PathSegment[] = ['service', index, 'group_volumes', vi];
        if (!group.volumes.has(vname)) {
          add([...path, 'name'], `group "${groupName}" has no volume "${vname}"${hint(vname, [...group.volumes.keys()])}`);
          continue;
        }
        const base = group.volumes.get(vname);
        const mount = str(gv.path);
        const parsed = mount === undefined ? undefined : tryParseVolumeMapping(mount, { relativeHost: true });
        if (base === undefined || parsed === undefined || !parsed.ok) continue;
        const host = joinUnder(base, parsed.value.host);
        if (!isUnder(base, host)) {
          add([...path, 'path'], `host path "${host}" is outside the base path "${base}" of group volume "${vname}"`);
          continue;
        }
        claimGuest(parsed.value.guest, path);
      }
    }

    checkDuplicateEnvKeys(s.envs, ['service', index, 'envs'], add);

    // host ports are host-wide: two services cannot both listen on one
    const port = str(s.port);
    const parsedPort = port === undefined ? undefined : tryParsePortMapping(port);
    if (parsedPort?.ok) {
      const first = hostPorts.get(parsedPort.value.host);
      if (first) {
        add(['service', index, 'port'], `host port ${parsedPort.value.host} is already used by service "${first.service}" (service[${first.index}].port)`);
      } else hostPorts.set(parsedPort.value.host, { service: name, index });
    }
  }

  dependencyGraphIssues(services, serviceIndex, add);
  return issues;
}

/**
 * `network` is the one home of a group's way out: `local_only` beside it is
 * refused (even when they agree), `allow` needs `outbound = true`, and an entry
 * is listed once. (Each entry's syntax and the empty list are the schema's.)
 */
function groupNetworkIssues(g: Raw, index: number, add: (p: PathSegment[], m: string) => void): void {
  if (g.network === undefined) return;
  if (g.local_only !== undefined) {
    add(
      ['group', index, 'local_only'],
      'set either local_only or network, not both: network replaces local_only (local_only = false is network = { outbound = true }, local_only = true is network = { outbound = false })',
    );
  }
  if (!isObject(g.network)) return;
  if (g.network.outbound === false && g.network.allow !== undefined) {
    add(['group', index, 'network', 'allow'], 'allow needs outbound = true: with outbound = false the group has no way out to allow');
  }
  if (Array.isArray(g.network.allow) && !tooLongList(g.network.allow)) {
    const at = (i: number): PathSegment[] => ['group', index, 'network', 'allow', i];
    for (const p of egressAllowListProblems(g.network.allow, (i) => formatPath(at(i)))) {
      if (p.kind === 'duplicate') add(at(p.index), p.message);
    }
  }
}

const tooLongList = (v: unknown[]): boolean => v.length > ConfigLimits.maxListLength;

function checkDuplicateEnvKeys(envs: unknown, at: PathSegment[], add: (p: PathSegment[], m: string) => void): void {
  const keys = new Map<string, number>();
  for (const { index, value } of strings(envs)) {
    const parsed = tryParseEnvVar(value);
    if (!parsed.ok) continue;
    const first = keys.get(parsed.value.key);
    if (first !== undefined) add([...at, index], `duplicate env key "${parsed.value.key}" (also ${formatPath([...at, first])})`);
    else keys.set(parsed.value.key, index);
  }
}

/**
 * Cycles (each printed once, `a -> b -> c -> a`, reported at the edge that closes it)
 * and chains longer than ConfigLimits.maxDependencyChain. The length of a chain is the
 * number of services on the longest depends_on path: s1 ← s2 ← … ← s32 has length 32.
 */
function dependencyGraphIssues(
  services: { index: number; value: Raw }[],
  serviceIndex: Map<string, number>,
  add: (p: PathSegment[], m: string) => void,
): void {
  // Adjacency over the first definition of each name, known targets only.
  const deps = new Map<string, { name: string; at: number }[]>();
  const order: string[] = [];
  for (const { index, value: s } of services) {
    const name = str(s.name);
    if (name === undefined || serviceIndex.get(name) !== index) continue;
    order.push(name);
    deps.set(
      name,
      strings(s.depends_on)
        .filter(({ value }) => value !== name && serviceIndex.has(value))
        .map(({ index: at, value }) => ({ name: value, at })),
    );
  }

  const WHITE = 0, GRAY = 1, BLACK = 2;
  const color = new Map<string, number>(order.map((n) => [n, WHITE]));
  const stack: string[] = [];
  const seenCycles = new Set<string>();
  const backEdges = new Set<string>(); // "from\0to", ignored for chain lengths
  const visit = (node: string): void => {
    color.set(node, GRAY);
    stack.push(node);
    for (const { name: dep, at } of deps.get(node) ?? []) {
      const c = color.get(dep);
      if (c === GRAY) {
        backEdges.add(`${node}\0${dep}`);
        const cycle = [...stack.slice(stack.indexOf(dep)), dep];
        // Rotation-independent key so each cycle is reported once.
        const members = cycle.slice(0, -1);
        const key = [...members].sort().join('\0');
        if (!seenCycles.has(key)) {
          seenCycles.add(key);
          add(['service', serviceIndex.get(node) ?? 0, 'depends_on', at], `dependency cycle: ${cycle.join(' -> ')}`);
        }
      } else if (c === WHITE) visit(dep);
    }
    stack.pop();
    color.set(node, BLACK);
  };
  for (const n of order) if (color.get(n) === WHITE) visit(n);

  // Longest chain ending at each service (cycle edges removed), memoised.
  const chain = new Map<string, string[]>(); // service → longest chain, itself first
  const longest = (node: string): string[] => {
    const known = chain.get(node);
    if (known) return known;
    let best: string[] = [];
    for (const { name: dep } of deps.get(node) ?? []) {
      if (backEdges.has(`${node}\0${dep}`)) continue;
      const c = longest(dep);
      if (c.length > best.length) best = c;
    }
    const result = [node, ...best];
    chain.set(node, result);
    return result;
  };
  const limit = ConfigLimits.maxDependencyChain;
  for (const n of order) {
    const c = longest(n);
    // Report where the limit is first crossed: this chain is too long but its tail is not.
    if (c.length === limit + 1) {
      add(['service', serviceIndex.get(n) ?? 0, 'depends_on'], `dependency chain of ${c.length} services exceeds the limit of ${limit}: ${c.join(' -> ')}`);
    }
  }
}
