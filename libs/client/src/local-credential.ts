import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Where `monocore serve` writes the local credential (0600): MONOCORE_HOME/run/api-local.token,
 * MONOCORE_HOME defaulting to ~/.monocore. The engine's MonocoreHome owns that layout; the SDK
 * cannot import the engine, so this mirrors it and a test keeps the two equal.
 */
export function localCredentialPath(env: NodeJS.ProcessEnv = process.env): string {
  const root = env.MONOCORE_HOME && env.MONOCORE_HOME.length > 0 ? env.MONOCORE_HOME : join(homedir(), '.monocore');
  return join(resolve(root), 'run', 'api-local.token');
}

/**
 * The credential `monocore serve` wrote for local clients, only when it was
 * issued for this very API origin: it is never sent to another local listener.
 */
export function readLocalCredential(origin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  try {
    const saved = JSON.parse(readFileSync(localCredentialPath(env), 'utf8')) as { url?: unknown; token?: unknown };
    if (typeof saved.url !== 'string' || typeof saved.token !== 'string') return undefined;
    return new URL(saved.url).origin === origin ? saved.token : undefined;
  } catch {
    return undefined;
  }
}
