import type { Command } from 'commander';
import { ApiClient } from './api-client.js';

/** Options every API-talking command accepts. */
export interface ApiCommandOptions {
  api?: string;
}

/** Adds `--api <url>` (default $MONOCORE_API_URL or http://127.0.0.1:3456). */
export function withApiOption(cmd: Command): Command {
  return cmd.option('--api <url>', 'monocore API URL (default: $MONOCORE_API_URL or http://127.0.0.1:3456; token from $MONOCORE_API_TOKEN)');
}

export function clientFor(opts: ApiCommandOptions): ApiClient {
  return new ApiClient(opts.api !== undefined ? { url: opts.api } : {});
}
