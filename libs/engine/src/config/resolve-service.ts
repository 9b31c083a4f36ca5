import { MonocoreError } from '../errors/index.js';
import { parseImageReference } from '../oci/image-reference.js';
import { tryParseEnvVar, type EnvVar } from './env-var.js';
import type { RestartPolicy } from './limits.js';
import type { MonocoreConfig } from './monocore-config-schema.js';
import { tryParsePortMapping, type PortMapping } from './port-mapping.js';
import { isUnder, joinUnder, tryParseVolumeMapping, type VolumeMapping } from './volume-mapping.js';

/**
 * A service with everything looked up: defaults applied, its group's env sets and
 * volumes merged in, ports and volumes parsed, the image reference normalised.
 * Plain JSON (no class instances), so it can travel in job payloads as is.
 * This is what orchestration and the VM layer consume.
 */
export interface ResolvedService {
  name: string;
  /** The image as written in the config. */
  base?: string;
  /** The normalised image reference (`docker.io/library/alpine:latest`). */
  image?: string;
  group?: string;
  /**
   * No way out of the group network: the group's `network.outbound` negated, else its
   * `local_only` (true when the service has no group: the safe default).
   */
  localOnly: boolean;
  /** With outbound access: only these destinations (the group's `network.allow`); absent = any public address. */
  egressAllow?: string[];
  command?: string;
  args: string[];
  cpus: number;
  /** MiB. */
  ram: number;
  /** Writable disk, MiB (unset: ConfigLimits.diskDefault; left out so older configs keep their hash). */
  disk?: number;
  workdir?: string;
  port?: PortMapping;
  /** Group volumes (host side resolved under the group volume's base path), then the service's own. */
  volumes: VolumeMapping[];
  /** Group env sets in group_envs order, then the service's envs; a later key overrides an earlier one in place. */
  envs: EnvVar[];
  dependsOn: string[];
  restart: RestartPolicy;
  maxRestarts: number;
}

function broken(service: string, message: string): MonocoreError {
  // Only reachable with a config that did not go through validateConfig.
  return new MonocoreError('MC_CONFIG_INVALID', `service "${service}": ${message}`, {
    issues: [{ path: `service(${service})`, message }],
  });
}

/** Resolves one service of a validated config. */
export function resolveService(config: MonocoreConfig, name: string): ResolvedService {
  const service = config.service.find((s) => s.name === name);
  if (!service) {
    throw new MonocoreError('MC_PLAN_UNKNOWN_SELECTION', `unknown service "${name}"`, { service: name });
  }
  const group = service.group === undefined ? undefined : config.group.find((g) => g.name === service.group);
  if (service.group !== undefined && !group) throw broken(name, `unknown group "${service.group}"`);

  const envs = new Map<string, string>();
  for (const setName of service.group_envs) {
    const set = group?.env.find((e) => e.name === setName);
    if (!set) throw broken(name, `group has no env set "${setName}"`);
    for (const raw of set.envs) {
      const env = tryParseEnvVar(raw);
      if (!env.ok) throw broken(name, env.error);
      envs.set(env.value.key, env.value.value);
    }
  }
  for (const raw of service.envs) {
    const env = tryParseEnvVar(raw);
    if (!env.ok) throw broken(name, env.error);
    envs.set(env.value.key, env.value.value);
  }

  const volumes: VolumeMapping[] = [];
  for (const mount of service.group_volumes) {
    const volume = group?.volume.find((v) => v.name === mount.name);
    if (!volume) throw broken(name, `group has no volume "${mount.name}"`);
    const parsed = tryParseVolumeMapping(mount.path, { relativeHost: true });
    if (!parsed.ok) throw broken(name, parsed.error);
    const host = joinUnder(volume.path, parsed.value.host);
    if (!isUnder(volume.path, host)) throw broken(name, `host path "${host}" is outside "${volume.path}"`);
    volumes.push({ host, guest: parsed.value.guest });
  }
  for (const raw of service.volumes) {
    const parsed = tryParseVolumeMapping(raw);
    if (!parsed.ok) throw broken(name, parsed.error);
    const same = volumes.findIndex((v) => v.guest === parsed.value.guest);
    if (same >= 0) volumes.splice(same, 1);
    volumes.push(parsed.value);
  }

  let port: PortMapping | undefined;
  if (service.port !== undefined) {
    const parsed = tryParsePortMapping(service.port);
    if (!parsed.ok) throw broken(name, parsed.error);
    port = parsed.value;
  }

  const resolved: ResolvedService = {
    name,
    localOnly: group?.network ? !group.network.outbound : (group?.local_only ?? true),
    args: [...service.args],
    cpus: service.cpus,
    ram: service.ram,
    volumes,
    envs: [...envs].map(([key, value]) => ({ key, value })),
    dependsOn: [...service.depends_on],
    restart: service.restart,
    maxRestarts: service.max_restarts,
  };
  if (service.base !== undefined) {
    resolved.base = service.base;
    resolved.image = parseImageReference(service.base).toString();
  }
  if (service.group !== undefined) resolved.group = service.group;
  if (group?.network?.outbound && group.network.allow) resolved.egressAllow = [...group.network.allow];
  if (service.command !== undefined) resolved.command = service.command;
  if (service.workdir !== undefined) resolved.workdir = service.workdir;
  if (service.disk !== undefined) resolved.disk = service.disk;
  if (port) resolved.port = port;
  return resolved;
}

/** Resolves every service, in config order. */
export function resolveServices(config: MonocoreConfig): ResolvedService[] {
  return config.service.map((s) => resolveService(config, s.name));
}
