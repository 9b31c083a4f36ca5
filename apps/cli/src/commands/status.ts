import type { Command } from 'commander';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';
import { renderStatusTable, type ServiceRow } from '../format/status-table.js';

interface StatusOptions extends ApiCommandOptions {
  group?: string;
  json?: boolean;
  watch?: boolean;
  interval?: string;
}

export function registerStatus(program: Command): void {
  withApiOption(
    program
      .command('status')
      .description('Show every service: status, host, pid, restarts, uptime, exit code, last error')
      .argument('[services...]', 'only these services')
      .option('-g, --group <name>', 'only the services of this group')
      .option('--json', 'print JSON ({"services": [...]}); with --watch one JSON line per change')
      .option('-w, --watch', 'keep refreshing until interrupted (Ctrl-C)')
      .option('--interval <seconds>', 'refresh period with --watch', '1'),
  ).action(async (services: string[], opts: StatusOptions) => {
    const interval = Number(opts.interval);
    if (!(interval >= 0.2 && interval <= 3600)) {
      process.stderr.write(`error: --interval must be between 0.2 and 3600 seconds, got "${opts.interval}"\n`);
      process.exitCode = ExitCode.Usage;
      return;
    }
    const client = clientFor(opts);
    const query = {
      ...(opts.group !== undefined ? { group: opts.group } : {}),
      ...(services.length > 0 ? { services } : {}),
    };
    const fetchStatus = async (): Promise<ServiceRow[]> => client.status(query);
    try {
      if (!opts.watch) {
        const rows = await fetchStatus();
        process.stdout.write(opts.json ? `${JSON.stringify({ services: rows })}\n` : renderStatusTable(rows));
        return;
      }
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let last = '';
      const tty = process.stdout.isTTY === true;
      while (!stop.signal.aborted) {
        const rows = await fetchStatus();
        const snapshot = JSON.stringify(rows);
        if (opts.json) {
          if (snapshot !== last) process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), services: rows })}\n`);
        } else if (tty) {
          process.stdout.write(`\x1b[H\x1b[2J${new Date().toISOString().slice(11, 19)}  monocore status (every ${interval}s, Ctrl-C to stop)\n\n${renderStatusTable(rows)}`);
        } else if (snapshot !== last) {
          process.stdout.write(`--- ${new Date().toISOString()}\n${renderStatusTable(rows)}`);
        }
        last = snapshot;
        await new Promise<void>((resolve) => {
          const onAbort = (): void => {
            clearTimeout(t);
            resolve();
          };
          const t = setTimeout(() => {
            stop.signal.removeEventListener('abort', onAbort);
            resolve();
          }, interval * 1000);
          stop.signal.addEventListener('abort', onAbort, { once: true });
        });
      }
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    } finally {
      await client.close();
    }
  });
}
