import type { Command } from 'commander';
import type { StateEvent, UpResult } from '@monocore/client';
import { checkConfigToml, readConfigFile } from '@monocore/engine/config';
import { isMonocoreError } from '@monocore/engine/errors';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';
import { renderStatusTable, statusLabel } from '../format/status-table.js';
import { formatIssueLine } from './validate.js';

interface UpCommandOptions extends ApiCommandOptions {
  file: string;
  group?: string;
  wait: boolean;
  json?: boolean;
  timeout?: string;
}

const time = (iso?: string): string => (iso ? new Date(iso) : new Date()).toISOString().slice(11, 19);

export function printPlan(result: Pick<UpResult, 'deploymentId' | 'plan'>, out: NodeJS.WritableStream): void {
  const n = result.plan.length;
  out.write(`deployment ${result.deploymentId}: ${n} service${n === 1 ? '' : 's'} in dependency order\n`);
  const width = Math.max(7, ...result.plan.map((p) => p.name.length));
  for (const p of result.plan) {
    const after = p.dependsOn.length > 0 ? `  after ${p.dependsOn.join(', ')}` : '';
    out.write(`  ${String(p.level).padStart(2)}  ${p.name.padEnd(width)}  ${p.action.padEnd(9)}  on ${p.host}${p.group ? `  [${p.group}]` : ''}${after}\n`);
  }
}

export function registerUp(program: Command): void {
  withApiOption(
    program
      .command('up')
      .description('Start services from monocore.toml in dependency order, showing live progress (exit 1 if any failed)')
      .argument('[services...]', 'only these services (and what they depend on)')
      .option('-f, --file <path>', 'configuration file', 'monocore.toml')
      .option('-g, --group <name>', 'only the services of this group (and what they depend on)')
      .option('--no-wait', 'return once the deployment is enqueued (print the plan only)')
      .option('--timeout <seconds>', 'give up waiting after this many seconds (the deployment goes on)', '600')
      .option('--json', 'print the result as JSON on stdout (progress still goes to stderr)'),
  ).action(async (services: string[], opts: UpCommandOptions) => {
    const timeout = Number(opts.timeout);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 3600) {
      process.stderr.write(`error: --timeout must be a whole number of seconds between 1 and 3600, got "${opts.timeout}"\n`);
      process.exitCode = ExitCode.Usage;
      return;
    }
    // 1. Validate locally: every problem with FILE:LINE:COL, before anything is sent.
    let text: string;
    try {
      text = await readConfigFile(opts.file);
    } catch (err) {
      if (!isMonocoreError(err, 'MC_CONFIG_FILE_NOT_FOUND')) throw err;
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = ExitCode.Usage;
      return;
    }
    const checked = checkConfigToml(text);
    if (!checked.ok) {
      if (opts.json) process.stdout.write(`${JSON.stringify({ ok: false, file: opts.file, issues: checked.issues })}\n`);
      process.stderr.write(`${checked.issues.map((i) => formatIssueLine(opts.file, i)).join('\n')}\n${opts.file}: invalid: not deployed\n`);
      process.exitCode = ExitCode.Failure;
      return;
    }

    const client = clientFor(opts);
    const events = new AbortController();
    try {
      // 2. Subscribe to events before enqueueing so no transition is missed.
      const progress = opts.wait ? await client.events({ signal: events.signal }) : undefined;

      const result = await client.up(checked.config, {
        ...(opts.group !== undefined ? { group: opts.group } : {}),
        ...(services.length > 0 ? { services } : {}),
      });
      if (!opts.json) printPlan(result, process.stdout);
      if (!opts.wait) {
        if (opts.json) process.stdout.write(`${JSON.stringify({ ...result, ok: true, waited: false })}\n`);
        else process.stdout.write('enqueued; follow with `monocore status --watch`\n');
        return;
      }

      // 3. Live progress for the planned services until the engine says the deployment settled.
      const names = new Set(result.plan.map((p) => p.name));
      const width = Math.max(7, ...[...names].map((n) => n.length));
      const show = (e: StateEvent): void => {
        if (e.kind !== 'transition' || !e.service || !names.has(e.service)) return;
        const change = e.to ? `${e.from ?? 'new'} → ${e.to}` : (e.detail ?? 'updated');
        const detail = e.to && e.detail ? `  (${e.detail})` : '';
        process.stderr.write(`  ${time(e.time)}  ${e.service.padEnd(width)}  ${change}${detail}\n`);
      };
      const printer = (async () => {
        if (!progress) return;
        try {
          for await (const e of progress) show(e);
        } catch {
          // The stream ends when we abort it, or if the API goes away; the wait below decides.
        }
      })();
      // Ctrl-C stops watching, not the deployment: say so, and exit like an interrupted command (130).
      const onInterrupt = (): void => {
        process.stderr.write(
          `\ninterrupted: deployment ${result.deploymentId} goes on in the background; follow it with \`monocore status --watch\`\n`,
        );
        process.exit(130);
      };
      process.once('SIGINT', onInterrupt);
      let outcome;
      try {
        outcome = await client.waitFor(result.deploymentId, { timeout });
      } finally {
        process.off('SIGINT', onInterrupt);
        events.abort();
        await printer;
      }

      const failed = outcome.services.filter((s) => s.status !== 'running');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ deploymentId: result.deploymentId, ok: outcome.ok, plan: result.plan, services: outcome.services })}\n`);
      } else {
        process.stdout.write(`\n${renderStatusTable(outcome.services)}`);
        if (outcome.ok) process.stdout.write(`all ${outcome.services.length} service(s) running\n`);
        else process.stdout.write(`not all services are running: ${failed.map((s) => `${s.name} ${statusLabel(s)}`).join(', ')}\n`);
      }
      process.exitCode = outcome.ok ? ExitCode.Ok : ExitCode.Failure;
    } finally {
      events.abort();
      await client.close();
    }
  });
}
