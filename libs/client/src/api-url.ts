import { MonocoreApiError } from './monocore-api-error.js';

/** The local API's port when nothing else is said: `monocore serve`'s default, and the local daemon's. */
export const DEFAULT_API_PORT = 3456;

/**
 * $MONOCORE_API_PORT or 3456: where `monocore serve` listens by default, where
 * clients look for the API when neither a URL nor MONOCORE_API_URL is given
 * (and so where the CLI starts its local daemon; tests move it off the default).
 */
export function defaultApiPort(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MONOCORE_API_PORT;
  if (raw === undefined || raw === '') return DEFAULT_API_PORT;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MonocoreApiError('MC_USAGE', `MONOCORE_API_PORT must be a port number (1-65535), got "${raw}"`);
  }
  return port;
}

/** http://127.0.0.1:<defaultApiPort()> */
export function defaultApiUrl(env: NodeJS.ProcessEnv = process.env): string {
  return `http://127.0.0.1:${defaultApiPort(env)}`;
}

/** The API's base URL checked (http or https), without trailing slashes. `label` names where it came from in errors. */
export function parseApiUrl(raw: string, label: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new MonocoreApiError('MC_USAGE', `${label}: "${raw}" is not a URL (e.g. http://127.0.0.1:${DEFAULT_API_PORT})`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new MonocoreApiError('MC_USAGE', `${label}: "${raw}" must be an http:// or https:// URL`);
  }
  return parsed;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}
