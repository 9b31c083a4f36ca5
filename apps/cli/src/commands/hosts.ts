import type { Command } from 'commander';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { renderHostsTable } from '../format/hosts-table.js';

interface HostsOptions extends ApiCommandOptions {
  json?: boolean;
}

export function registerHosts(program: Command): void {
  withApiOption(
    program
      .command('hosts')
      .description('Show every worker host: capacity and free resources, backend and acceleration in use, version, last heartbeat')
      .option('--json', 'print JSON ({"hosts": [...]}, the API\'s GET /hosts)'),
  ).action(async (opts: HostsOptions) => {
    const client = clientFor(opts);
    try {
      const hosts = await client.hosts();
      process.stdout.write(opts.json ? `${JSON.stringify({ hosts })}\n` : renderHostsTable(hosts));
    } finally {
      await client.close();
    }
  });
}
