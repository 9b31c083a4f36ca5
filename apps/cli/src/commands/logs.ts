import type { Command } from 'commander';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';
import { writeOrWait } from '@monocore/engine/write-or-wait';

interface LogsOptions extends ApiCommandOptions {
  stderr?: boolean;
  lines?: string;
  follow?: boolean;
  json?: boolean;
}

export function registerLogs(program: Command): void {
  withApiOption(
    program
      .command('logs')
      .description("Print a service's output (stdout, or stderr with --stderr)")
      .argument('<service>', 'service name')
      .option('--stderr', 'show stderr instead of stdout')
      .option('-n, --lines <n>', 'number of trailing lines', '100')
      .option('-f, --follow', 'keep printing new output until interrupted')
      .option('--json', 'one JSON object per line: {"service", "stream", "line"}'),
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
      const stream = opts.stderr ? 'stderr' : 'stdout';
      const lines = await client.logs(service, { stream, tail, follow: opts.follow === true, signal: stop.signal });
      const out = async (data: string): Promise<void> => (stop.signal.aborted ? undefined : writeOrWait(process.stdout, data));
      try {
        for await (const line of lines) await out(opts.json ? `${JSON.stringify({ service, stream, line })}\n` : `${line}\n`);
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
