import { MonocoreClient } from '@monocore/client';

/**
 * The CLI's client of the monocore API: the SDK (@monocore/client), with the
 * CLI's words in its errors (`--api`). One client for every API call.
 */
export function cliClient(options: { url?: string; onUnreachable?: () => Promise<string> } = {}): MonocoreClient {
  return new MonocoreClient({
    ...options,
    urlLabel: '--api / MONOCORE_API_URL',
    unreachableHint: '(set --api or MONOCORE_API_URL)',
  });
}
