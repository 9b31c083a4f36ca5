import type { Command } from 'commander';
import { SANDBOX_ID_PATTERN, type ExecExit, type ExecTarget, type MonocoreClient } from '@monocore/client';
import { MonocoreError } from '@monocore/engine/errors';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';
import { durationFlag } from '../flags/duration-flag.js';
import { envFlagsToMap } from '../flags/env-flag.js';
import { writeOrWait } from '@monocore/engine/write-or-wait';

interface ExecCommandOptions extends ApiCommandOptions {
  interactive?: boolean;
  tty?: boolean;
  env: string[];
  workdir?: string;
  user?: string;
  timeout?: string;
  json?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** A sandbox id (`sb-` and 12 characters) names a sandbox; anything else a service. */
export async function resolveTarget(client: MonocoreClient, target: string): Promise<ExecTarget> {
  // The sandbox is looked up first: an unknown or ended one is an error before anything runs.
  return SANDBOX_ID_PATTERN.test(target) ? client.getSandbox(target) : client.service(target);
}

/** Interrupted by Ctrl-C or a kill: the command is killed (the API kills it when the call goes away). */
class Interrupted extends Error {
  constructor(readonly signal: 'SIGINT' | 'SIGTERM') {
    super(signal);
  }
}

export function registerExec(program: Command): void {
  withApiOption(
    program
      .command('exec')
      .description('Run a command in a sandbox or a running service, stream its output, exit with its exit code')
      .argument('<target>', 'a sandbox id (sb-…) or a service name')
      .argument('<command...>', 'the command and its arguments, after -- (no shell: use sh -c "…" for one)')
      .option('-i, --interactive', 'forward stdin to the command')
      .option('-t, --tty', 'a pseudo-terminal: raw mode, resized with this terminal (stdout and stderr arrive merged)')
      .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable; KEY alone copies it from here)', collect, [])
      .option('-w, --workdir <DIR>', 'working directory in the guest (absolute)')
      .option('-u, --user <USER>', 'run as USER: name, uid, name:group or uid:gid')
      .option('--timeout <duration>', 'kill the command (its whole process tree) after this long: 30, 30s, 5m (exit 137)')
      .option('--json', "wait, then print the API's ExecResult ({exit_code, stdout, stderr, duration_ms, timed_out, …}); not with -t")
      .addHelpText(
        'after',
        '\nExamples:\n  monocore exec sb-k3v9x0q2m7ta -- python -c "print(6 * 7)"\n  monocore exec -it sb-k3v9x0q2m7ta -- sh\n' +
          '  tar -c . | monocore exec -i web -- tar -x -C /srv\n' +
          '\nExit code: the command\'s own (128+N when killed by signal N, 137 after --timeout; from the guest: 126 not\n' +
          'executable, 127 not found, 125 bad -w/-u); 125 when monocore could not run it or lost it; 2 bad usage;\n' +
          '130 interrupted (Ctrl-C; the command is killed).',
      ),
  ).action(async (target: string, command: string[], opts: ExecCommandOptions) => {
    // Usage first (exit 2), before any call.
    if (opts.tty && opts.json) throw new MonocoreError('MC_USAGE', '--json and -t/--tty do not go together (a terminal session has no result to print)');
    if (opts.workdir !== undefined && !opts.workdir.startsWith('/')) throw new MonocoreError('MC_USAGE', `-w/--workdir: "${opts.workdir}" must be an absolute guest path`);
    const env = envFlagsToMap(opts.env);
    const fields = {
      ...(Object.keys(env).length > 0 ? { env } : {}),
      ...(opts.workdir !== undefined ? { cwd: opts.workdir } : {}),
      ...(opts.user !== undefined ? { user: opts.user } : {}),
      ...(opts.timeout !== undefined ? { timeout_s: durationFlag('--timeout', opts.timeout, 1, 24 * 3600) } : {}),
    };

    const client = clientFor(opts);
    const stop = new AbortController();
    let interruptedBy: 'SIGINT' | 'SIGTERM' | undefined;
    const onSignal = (signal: 'SIGINT' | 'SIGTERM') => (): void => {
      interruptedBy ??= signal;
      stop.abort(new Interrupted(signal));
    };
    const onInt = onSignal('SIGINT');
    const onTerm = onSignal('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    try {
      const where = await resolveTarget(client, target);
      let exit: ExecExit;
      if (opts.json) exit = await runBuffered(where, command, fields, opts.interactive === true, stop.signal);
      else if (opts.tty) exit = await runTerminal(where, command, fields, opts.interactive === true, stop.signal);
      else exit = await runStreamed(where, command, fields, opts.interactive === true, stop.signal);
      if (exit.spawn_error) process.stderr.write(`monocore exec: ${exit.spawn_error}\n`);
      if (exit.timed_out) process.stderr.write(`monocore exec: the command ran out of time (--timeout ${opts.timeout}) and was killed\n`);
      process.exitCode = exit.exit_code;
    } catch (err) {
      if (interruptedBy) {
        process.exitCode = interruptedBy === 'SIGINT' ? 130 : 143;
        return;
      }
      process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = ExitCode.ExecFailed;
    } finally {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      if (opts.interactive) process.stdin.destroy();
      await client.close();
    }
  });
}

type Fields = { env?: Record<string, string>; cwd?: string; user?: string; timeout_s?: number };

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(parts);
}

/** --json: one buffered call (stdin read whole first with -i), the ExecResult on stdout. */
async function runBuffered(target: ExecTarget, command: string[], fields: Fields, interactive: boolean, signal: AbortSignal): Promise<ExecExit> {
  const stdin = interactive ? await readAll(process.stdin) : undefined;
  const result = await target.exec(command, { ...fields, ...(stdin ? { stdin } : {}), signal });
  await writeOrWait(process.stdout, `${JSON.stringify(result)}\n`);
  return result;
}

/** Output as it comes, byte for byte, at the pace stdout takes it; -i streams stdin over the WebSocket route. */
async function runStreamed(target: ExecTarget, command: string[], fields: Fields, interactive: boolean, signal: AbortSignal): Promise<ExecExit> {
  const stream = target.execStream(command, { ...fields, binary: true, signal, ...(interactive ? { stdin: process.stdin } : {}) });
  for await (const e of stream) {
    if ('exit_code' in e) return e;
    await writeOrWait(e.stream === 'stdout' ? process.stdout : process.stderr, e.data);
  }
  throw new Error('the output ended without the exit');
}

/** -t: a pseudo-terminal over the WebSocket route; with -i this terminal in raw mode feeds it, and follows its size. */
async function runTerminal(target: ExecTarget, command: string[], fields: Fields, interactive: boolean, signal: AbortSignal): Promise<ExecExit> {
  const size = (): { cols: number; rows: number } => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
  const session = await target.session(command, { ...fields, tty: size(), stdin: interactive, signal });
  const raw = interactive && process.stdin.isTTY === true;
  const onResize = (): void => session.resize(size().cols, size().rows);
  const onData = (b: Buffer): void => session.write(b);
  const onEnd = (): void => session.end();
  process.on('SIGWINCH', onResize);
  if (interactive) {
    if (raw) process.stdin.setRawMode(true);
    process.stdin.on('data', onData);
    process.stdin.once('end', onEnd);
  }
  try {
    for await (const c of session.output()) await writeOrWait(process.stdout, c.data);
    return await session.exit;
  } finally {
    process.off('SIGWINCH', onResize);
    if (interactive) {
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      if (raw) process.stdin.setRawMode(false);
    }
    session.close();
  }
}
