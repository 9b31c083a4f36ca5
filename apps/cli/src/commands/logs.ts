import type { Command } from 'commander';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';

interface LogsOptions extends ApiCommandOptions {
  stderr?: boolean;
  lines?: string;
  follow?: boolean;
}

export function registerLogs(program: Command): void {
  withApiOption(
    program
      .command('logs')
      .description("Print a service's output (stdout, or stderr with --stderr)")
      .argument('<service>', 'service name')
      .option('--stderr', 'show stderr instead of stdout')
      .option('-n, --lines <n>', 'number of trailing lines', '100')
      .option('-f, --follow', 'keep printing new output until interrupted'),
  ).action(async (service: string, opts: LogsOptions) => {
    const tail = Number(opts.lines);
    if (!Number.isInteger(tail) || tail < 0 || tail > 100_000) {
      process.stderr.write(`error: -n/--lines must be a whole number between 0 and 100000, got "${opts.lines}"\n`);
      process.exitCode = ExitCode.Usage;
      return;
    }
    const client = clientFor(opts);
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const body = await client.stream(
        `/services/${encodeURIComponent(service)}/logs`,
        { stream: opts.stderr ? 'stderr' : 'stdout', tail, follow: opts.follow === true },
        'text/plain',
        stop.signal,
      );
      try {
        for await (const chunk of body) {
          if (!process.stdout.write(chunk as Uint8Array)) await new Promise((r) => process.stdout.once('drain', r));
        }
      } catch (err) {
        if (!stop.signal.aborted) throw err;
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await client.close();
    }
  });
}
