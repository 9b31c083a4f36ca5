import type { Command } from 'commander';
import type { MonocoreClient } from '@monocore/client';
import { cliClient } from './cli-client.js';
import { daemonAutoStart } from './daemon-auto-start.js';

/** Options every API-talking command accepts. */
export interface ApiCommandOptions {
  api?: string;
}

/** Adds `--api <url>` (default $MONOCORE_API_URL, else the local daemon, started when nothing answers). */
export function withApiOption(cmd: Command): Command {
  return cmd.option(
    '--api <url>',
    'monocore API URL (default: $MONOCORE_API_URL, else the local daemon at http://127.0.0.1:$MONOCORE_API_PORT (3456), started when nothing answers; token from $MONOCORE_API_TOKEN)',
  );
}

/** The command's API client; without --api or MONOCORE_API_URL it starts the local daemon when nothing answers. */
export function clientFor(opts: ApiCommandOptions): MonocoreClient {
  const autoStart = daemonAutoStart(opts);
  return cliClient({ ...(opts.api !== undefined ? { url: opts.api } : {}), ...(autoStart ? { onUnreachable: autoStart } : {}) });
}
