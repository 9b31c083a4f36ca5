import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { MonocoreError } from '../errors/index.js';
import type { RegistryClientOptions } from './registry-client.js';

/**
 * `$MONOCORE_HOME/registries.toml`: host-level registry settings, the file form of
 * MONOCORE_REGISTRY_MIRRORS / MONOCORE_INSECURE_REGISTRIES / MONOCORE_REGISTRY_AUTH:
 *
 *   insecure = ["registry.lan:5000"]            # plain HTTP allowed (loopback always is)
 *   [mirrors]
 *   "docker.io" = ["http://127.0.0.1:5000"]     # tried in order before the registry
 *   [auth."ghcr.io"]
 *   username = "me"
 *   password = "ghp_…"                          # or: auth = "<base64 user:password>"
 */
const RegistriesFileSchema = z.strictObject({
  insecure: z.array(z.string().min(1)).optional(),
  mirrors: z.record(z.string().min(1), z.array(z.string().regex(/^https?:\/\/[^/]/, 'must be an http:// or https:// URL'))).optional(),
  auth: z
    .record(
      z.string().min(1),
      z.union([z.strictObject({ username: z.string().min(1), password: z.string() }), z.strictObject({ auth: z.string().min(1) })]),
    )
    .optional(),
});

export function loadRegistriesFile(path: string): RegistryClientOptions {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new MonocoreError('MC_CONFIG_INVALID', `${path}: ${(err as Error).message}`, { path });
  }
  const r = RegistriesFileSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new MonocoreError('MC_CONFIG_INVALID', `${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`, { path, issues: r.error.issues });
  }
  const out: RegistryClientOptions = {};
  if (r.data.insecure) out.insecureRegistries = r.data.insecure;
  if (r.data.mirrors) out.mirrors = r.data.mirrors;
  if (r.data.auth) {
    out.credentials = {};
    for (const [host, a] of Object.entries(r.data.auth)) {
      if ('auth' in a) {
        const decoded = Buffer.from(a.auth, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon <= 0) throw new MonocoreError('MC_CONFIG_INVALID', `${path}: auth.${host}.auth: not base64 of "username:password"`, { path });
        out.credentials[host] = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
      } else {
        out.credentials[host] = a;
      }
    }
  }
  return out;
}
