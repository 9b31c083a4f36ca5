import type { Command } from 'commander';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';
import { renderStatusTable, statusLabel } from '../format/status-table.js';

interface StopOptions extends ApiCommandOptions {
  group?: string;
  wait: boolean;
  json?: boolean;
  timeout?: string;
}

/** Shared by `down` and `remove`: same selection, same output. */
export function registerStopCommand(program: Command, action: 'down' | 'remove', description: string): void {
  withApiOption(
    program
      .command(action)
      .description(description)
      .argument('[services...]', 'only these services (default: every service)')
      .option('-g, --group <name>', 'only the services of this group')
      .option('--no-wait', 'return once the stop is enqueued')
      .option('--timeout <seconds>', 'give up waiting after this many seconds', '300')
      .option('--json', 'print the result as JSON on stdout'),
  ).action(async (services: string[], opts: StopOptions) => {
    const timeout = Number(opts.timeout);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 3600) {
      process.stderr.write(`error: --timeout must be a whole number of seconds between 1 and 3600, got "${opts.timeout}"\n`);
      process.exitCode = ExitCode.Usage;
      return;
    }
    const client = clientFor(opts);
    try {
      const selection = {
        ...(opts.group !== undefined ? { group: opts.group } : {}),
        ...(services.length > 0 ? { services } : {}),
      };
      const result = await client[action]({ ...selection, ...(opts.wait ? { wait: true, timeout } : {}) });
      const verb = action === 'down' ? 'stopped' : 'removed';
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ ...result, waited: opts.wait })}\n`);
      } else if (result.order.length === 0) {
        process.stdout.write('nothing to do: no matching service\n');
      } else {
        process.stdout.write(`deployment ${result.deploymentId}: ${opts.wait ? verb : `${action} enqueued for`} ${result.order.join(', ')} (in this order)\n`);
        if (result.services.length > 0) process.stdout.write(renderStatusTable(result.services));
      }
      if (opts.wait && action === 'down') {
        const stuck = result.services.filter((s) => result.order.includes(s.name) && !['stopped', 'exited', 'failed'].includes(s.status));
        if (stuck.length > 0) {
          process.stderr.write(`not stopped: ${stuck.map((s) => `${s.name} ${statusLabel(s)}`).join(', ')}\n`);
          process.exitCode = ExitCode.Failure;
        }
      }
    } finally {
      await client.close();
    }
  });
}

export function registerDown(program: Command): void {
  registerStopCommand(program, 'down', 'Stop services, dependents first (every service, a group, or named services)');
}
