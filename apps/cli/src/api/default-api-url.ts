import { MonocoreError } from '@monocore/engine/errors';

/** The local API's port when nothing else is said: `serve`'s default, and the local daemon's. */
export const DEFAULT_API_PORT = 3456;

/**
 * $MONOCORE_API_PORT or 3456: where `monocore serve` listens by default, where
 * the CLI looks for the API when neither --api nor MONOCORE_API_URL is given,
 * and so where it starts the local daemon (tests move it off the default).
 */
export function defaultApiPort(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MONOCORE_API_PORT;
  if (raw === undefined || raw === '') return DEFAULT_API_PORT;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MonocoreError('MC_USAGE', `MONOCORE_API_PORT must be a port number (1-65535), got "${raw}"`);
  }
  return port;
}

/** http://127.0.0.1:<defaultApiPort()> */
export function defaultApiUrl(env: NodeJS.ProcessEnv = process.env): string {
  return `http://127.0.0.1:${defaultApiPort(env)}`;
}
