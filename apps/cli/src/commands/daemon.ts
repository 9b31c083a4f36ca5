import type { Command } from 'commander';
import { open, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliClient } from '../api/cli-client.js';
import { LocalDaemon, logTail, type DaemonState } from '../daemon/local-daemon.js';
import { ExitCode } from '../exit-codes.js';

interface StatusJson {
  phase: DaemonState['phase'];
  running: boolean;
  home: string;
  url: string;
  log: string;
  pid?: number;
  startedAt?: string;
  uptimeSeconds?: number;
  version?: string;
  /** Why a record is stale. */
  why?: string;
  /** Services by status, from the daemon's GET /status. */
  services?: Record<string, number>;
  /** With no daemon of ours: whether some other API (a `monocore serve` in a terminal) answers at the URL. */
  otherApiAnswers?: boolean;
}

const duration = (s: number): string =>
  s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;

async function servicesByStatus(url: string): Promise<Record<string, number> | undefined> {
  const client = cliClient({ url });
  try {
    const services = await client.status();
    const counts: Record<string, number> = {};
    for (const s of services) counts[s.status] = (counts[s.status] ?? 0) + 1;
    return counts;
  } catch {
    return undefined;
  } finally {
    await client.close();
  }
}

async function otherApiAnswers(url: string): Promise<boolean> {
  const client = cliClient({ url });
  try {
    await client.health();
    return true;
  } catch {
    return false;
  } finally {
    await client.close();
  }
}

export function registerDaemon(program: Command): void {
  const daemon = program
    .command('daemon')
    .description('The local daemon (monocore serve, detached) that API commands start when nothing answers: status, start, stop, logs')
    .addHelpText(
      'after',
      `
Without --api or MONOCORE_API_URL, every command that talks to the API (\`up\`, \`status\`, \`logs\`, …) starts it
when nothing answers at http://127.0.0.1:$MONOCORE_API_PORT (3456). It runs API, worker, puller and an
embedded Redis in one process, in its own session, with its state under $MONOCORE_HOME and its output in
$MONOCORE_HOME/log/daemon.log; it keeps the environment of the command that started it.`,
    );

  daemon
    .command('status')
    .description('Is the daemon running: pid, URL, uptime, version, services (exit 1 when it is not running)')
    .option('--json', 'print JSON: {"phase", "running", "pid", "url", "uptimeSeconds", "services", …}')
    .action(async (opts: { json?: boolean }) => {
      const local = new LocalDaemon();
      const state = await local.inspect();
      const record = state.record;
      const out: StatusJson = {
        phase: state.phase,
        running: state.phase === 'running',
        home: local.home.root,
        url: record?.url ?? local.url,
        log: record?.log ?? local.home.daemonLogPath,
      };
      if (record) {
        Object.assign(out, { pid: record.pid, startedAt: record.startedAt, version: record.version });
        if (state.phase !== 'stale') out.uptimeSeconds = Math.max(0, Math.round((Date.now() - Date.parse(record.startedAt)) / 1000));
      }
      if (state.why) out.why = state.why;
      if (state.phase === 'running') {
        const services = await servicesByStatus(out.url);
        if (services) out.services = services;
      } else if (state.phase === 'absent') {
        out.otherApiAnswers = await otherApiAnswers(local.url);
      }
      process.exitCode = out.running ? ExitCode.Ok : ExitCode.Failure;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(out)}\n`);
        return;
      }
      const lines: string[] = [];
      switch (state.phase) {
        case 'running': {
          const total = Object.values(out.services ?? {}).reduce((a, b) => a + b, 0);
          const detail = Object.entries(out.services ?? {}).map(([k, v]) => `${v} ${k}`).join(', ');
          lines.push(`daemon:   running (pid ${out.pid}) at ${out.url}, up ${duration(out.uptimeSeconds ?? 0)}, monocore ${out.version}`);
          lines.push(`services: ${out.services ? `${total}${total > 0 ? ` (${detail})` : ''}` : 'unknown (GET /status failed)'}`);
          break;
        }
        case 'unresponsive':
          lines.push(`daemon:   pid ${out.pid} runs but does not answer at ${out.url} (starting, or stuck: see \`monocore daemon logs\`)`);
          break;
        case 'stale':
          lines.push(`daemon:   not running: a previous daemon stopped without cleaning up (${out.why}); the next command that needs it starts a new one`);
          break;
        case 'absent':
          lines.push(
            out.otherApiAnswers
              ? `daemon:   not running; but an API started some other way (\`monocore serve\`?) answers at ${out.url}, and commands use it`
              : `daemon:   not running; the next command that needs the API starts it at ${out.url}`,
          );
          break;
      }
      lines.push(`home:     ${out.home}`, `log:      ${out.log}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  daemon
    .command('start')
    .description('Start the daemon now (what the first API command would do); nothing to do when it runs')
    .action(async () => {
      const local = new LocalDaemon();
      const { url, started } = await local.ensure({ say: (line) => process.stderr.write(`${line}\n`) });
      if (started) process.stdout.write(`daemon running at ${url}\n`);
      else if ((await local.inspect()).phase === 'absent') process.stdout.write(`an API started some other way (\`monocore serve\`?) answers at ${url}: no daemon started\n`);
      else process.stdout.write(`daemon already running at ${url}\n`);
    });

  daemon
    .command('stop')
    .description('Stop the daemon: its VMs, worker, puller, API and Redis; then any process of its session still left')
    .option('--timeout <seconds>', 'SIGKILL it if it has not stopped after this long', '120')
    .option('--json', 'print JSON: {"before", "pid", "forced", "leftovers"}')
    .action(async (opts: { timeout: string; json?: boolean }) => {
      const timeout = Number(opts.timeout);
      if (!Number.isInteger(timeout) || timeout < 1 || timeout > 3600) {
        process.stderr.write(`error: --timeout must be a whole number of seconds between 1 and 3600, got "${opts.timeout}"\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }
      const result = await new LocalDaemon().stop({ timeoutMs: timeout * 1000 });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      if (result.before === 'absent') {
        process.stdout.write('daemon not running: nothing to stop\n');
        return;
      }
      const how = result.before === 'stale' ? `was not running (stale record of pid ${result.pid} removed)` : `stopped (pid ${result.pid}${result.forced ? ', SIGKILLed after the timeout' : ''})`;
      const left = result.leftovers > 0 ? `; ended ${result.leftovers} process(es) it had left` : '';
      process.stdout.write(`daemon ${how}${left}\n`);
    });

  daemon
    .command('logs')
    .description("Print the daemon's output ($MONOCORE_HOME/log/daemon.log; JSON details in serve.log)")
    .option('-n, --lines <n>', 'number of trailing lines', '100')
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .action(async (opts: { lines: string; follow?: boolean }) => {
      const lines = Number(opts.lines);
      if (!Number.isInteger(lines) || lines < 0 || lines > 100_000) {
        process.stderr.write(`error: -n/--lines must be a whole number between 0 and 100000, got "${opts.lines}"\n`);
        process.exitCode = ExitCode.Usage;
        return;
      }
      const path = new LocalDaemon().home.daemonLogPath;
      const size = await stat(path).then((s) => s.size, () => undefined);
      if (size === undefined && !opts.follow) {
        process.stderr.write(`no daemon log yet (${path}): the daemon has never been started in this MONOCORE_HOME\n`);
        process.exitCode = ExitCode.Failure;
        return;
      }
      if (lines > 0 && size !== undefined) {
        const tail = await logTail(path, 0, lines);
        if (tail) process.stdout.write(`${tail.replace(/^ {2}/gm, '')}\n`);
      }
      if (!opts.follow) return;
      await follow(path, size ?? 0);
    });
}

/** `tail -f`: prints what is appended to `path` from byte `from` on, until SIGINT/SIGTERM; starts over when the file is rotated. */
async function follow(path: string, from: number): Promise<void> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let offset = from;
  try {
    while (!stop.signal.aborted) {
      const size = await stat(path).then((s) => s.size, () => 0);
      if (size < offset) offset = 0; // rotated or truncated at a daemon start
      if (size > offset) {
        const fh = await open(path, 'r');
        try {
          const buf = Buffer.alloc(Math.min(size - offset, 1024 * 1024));
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          if (bytesRead > 0 && !process.stdout.write(buf.subarray(0, bytesRead))) {
            await new Promise<void>((resolve) => {
              process.stdout.once('drain', resolve);
              stop.signal.addEventListener('abort', () => resolve(), { once: true });
            });
          }
        } finally {
          await fh.close();
        }
        continue;
      }
      // A file gives nothing to wait on but its size (fs.watch misses writes over some filesystems).
      await sleep(250, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
