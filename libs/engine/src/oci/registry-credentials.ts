import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';

/** Username/password for one registry (a password may be a personal access token). */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** Resolves credentials for a registry host (e.g. "ghcr.io", "docker.io", "127.0.0.1:5000"). */
export type CredentialsResolver = (registry: string) => RegistryCredentials | undefined;

/**
 * Normalises the keys docker writes into config.json ("https://index.docker.io/v1/",
 * "https://ghcr.io", "localhost:5000") to a bare registry host.
 */
export function normalizeRegistryHost(key: string): string {
  let host = key.trim().replace(/^[a-z]+:\/\//i, '');
  host = host.split('/')[0] ?? host;
  host = host.toLowerCase();
  if (host === 'index.docker.io' || host === 'registry-1.docker.io' || host === 'registry.hub.docker.com') return 'docker.io';
  return host;
}

function decodeAuth(auth: string, where: string): RegistryCredentials {
  const decoded = Buffer.from(auth, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) {
    throw new MonocoreError('MC_OCI_UNAUTHORIZED', `${where}: "auth" is not base64 of "username:password"`, { where });
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

type AuthEntry = { auth?: unknown; username?: unknown; password?: unknown };

function entriesToMap(entries: Record<string, AuthEntry>, where: string): Map<string, RegistryCredentials> {
  const out = new Map<string, RegistryCredentials>();
  for (const [key, entry] of Object.entries(entries)) {
    if (entry === null || typeof entry !== 'object') continue;
    const host = normalizeRegistryHost(key);
    if (typeof entry.auth === 'string' && entry.auth.length > 0) {
      out.set(host, decodeAuth(entry.auth, `${where}: auths["${key}"]`));
    } else if (typeof entry.username === 'string' && typeof entry.password === 'string') {
      out.set(host, { username: entry.username, password: entry.password });
    }
  }
  return out;
}

/**
 * Reads `auths` from docker's config.json ($DOCKER_CONFIG/config.json or
 * ~/.docker/config.json). Credential helpers (credsStore/credHelpers) are not
 * run: monocore never executes programs named by a config file it did not write.
 */
export function dockerConfigCredentials(env: NodeJS.ProcessEnv = process.env): Map<string, RegistryCredentials> {
  const dir = env.DOCKER_CONFIG && env.DOCKER_CONFIG.length > 0 ? env.DOCKER_CONFIG : join(env.HOME ?? homedir(), '.docker');
  const path = join(dir, 'config.json');
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch {
    return new Map();
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new MonocoreError('MC_OCI_UNAUTHORIZED', `${path}: not valid JSON (${(err as Error).message})`, { path });
  }
  const auths = (json as { auths?: unknown } | null)?.auths;
  if (auths === undefined || auths === null || typeof auths !== 'object') return new Map();
  return entriesToMap(auths as Record<string, AuthEntry>, path);
}

/**
 * MONOCORE_REGISTRY_AUTH: a JSON object like docker's `auths`, e.g.
 * `{"ghcr.io":{"username":"me","password":"tok"}}` or `{"ghcr.io":{"auth":"<base64>"}}`.
 */
export function envCredentials(env: NodeJS.ProcessEnv = process.env): Map<string, RegistryCredentials> {
  const raw = env.MONOCORE_REGISTRY_AUTH;
  if (!raw) return new Map();
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new MonocoreError('MC_OCI_UNAUTHORIZED', `MONOCORE_REGISTRY_AUTH: not valid JSON (${(err as Error).message})`, {});
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new MonocoreError('MC_OCI_UNAUTHORIZED', 'MONOCORE_REGISTRY_AUTH: expected a JSON object of registry -> {username,password} or {auth}', {});
  }
  return entriesToMap(json as Record<string, AuthEntry>, 'MONOCORE_REGISTRY_AUTH');
}

/**
 * The default resolver, in order of precedence: explicit credentials (from the
 * monocore config), MONOCORE_REGISTRY_AUTH, then docker's config.json. Sources
 * are read once, when the resolver is built.
 */
export function defaultCredentialsResolver(
  explicit: Record<string, RegistryCredentials> = {},
  env: NodeJS.ProcessEnv = process.env,
): CredentialsResolver {
  const explicitMap = new Map(Object.entries(explicit).map(([k, v]) => [normalizeRegistryHost(k), v]));
  let fromEnv: Map<string, RegistryCredentials> | undefined;
  let fromDocker: Map<string, RegistryCredentials> | undefined;
  return (registry) => {
    const host = normalizeRegistryHost(registry);
    const e = explicitMap.get(host);
    if (e) return e;
    fromEnv ??= envCredentials(env);
    const v = fromEnv.get(host);
    if (v) return v;
    fromDocker ??= dockerConfigCredentials(env);
    return fromDocker.get(host);
  };
}
