import { Option, type Command } from 'commander';
import { MonocoreApiError, type CreateSandboxRequest, type SandboxRecord, type SandboxStatus } from '@monocore/client';
import { EgressAllowList } from '@monocore/engine/egress-allow-list';
import { MonocoreError, isMonocoreError } from '@monocore/engine/errors';
import { clientFor, withApiOption, type ApiCommandOptions } from '../api/command-options.js';
import { ExitCode } from '../exit-codes.js';
import { durationFlag } from '../flags/duration-flag.js';
import { envFlagsToMap } from '../flags/env-flag.js';
import { intFlag } from '../flags/int-flag.js';
import { renderSandboxDetails, renderSandboxTable } from '../format/sandbox-table.js';

interface CreateOptions extends ApiCommandOptions {
  cpus?: string;
  ram?: string;
  disk?: string;
  env: string[];
  workdir?: string;
  user?: string;
  timeout?: string;
  idleTimeout?: string;
  net?: 'none' | 'outbound';
  allow?: string[];
  cold?: boolean;
  onIdle?: 'expire' | 'pause';
  wait: boolean;
  json?: boolean;
}

const SEVEN_DAYS = 7 * 24 * 3600;
const STATUSES: readonly SandboxStatus[] = ['creating', 'running', 'paused', 'expired', 'deleted', 'lost', 'failed'];
const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** The API's request from the flags (each checked here, so a mistake is a usage error naming the flag). */
export function createRequest(image: string, opts: CreateOptions, env: NodeJS.ProcessEnv = process.env): CreateSandboxRequest {
  const vars = envFlagsToMap(opts.env, env);
  const allow = opts.allow ?? [];
  if (allow.length > 0 && opts.net !== 'outbound') throw new MonocoreError('MC_USAGE', '--allow limits the way out: it needs --net outbound');
  try {
    if (allow.length > 0) EgressAllowList.parse(allow, '--allow'); // the API's own check, here so a typo is a usage error naming --allow[i]
  } catch (err) {
    throw isMonocoreError(err) ? new MonocoreError('MC_USAGE', err.message, err.details) : err;
  }
  const network: CreateSandboxRequest['network'] = allow.length > 0 ? { outbound: true, allow } : opts.net;
  return {
    image,
    ...(opts.cpus !== undefined ? { cpus: intFlag('--cpus', opts.cpus, 1, 64) } : {}),
    ...(opts.ram !== undefined ? { ram: intFlag('--ram', opts.ram, 64, 1 << 20) } : {}),
    ...(opts.disk !== undefined ? { disk: intFlag('--disk', opts.disk, 64, 1 << 20) } : {}),
    ...(Object.keys(vars).length > 0 ? { env: vars } : {}),
    ...(opts.workdir !== undefined ? { workdir: opts.workdir } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(opts.timeout !== undefined ? { timeout_s: durationFlag('--timeout', opts.timeout, 1, SEVEN_DAYS) } : {}),
    ...(opts.idleTimeout !== undefined ? { idle_timeout_s: durationFlag('--idle-timeout', opts.idleTimeout, 1, SEVEN_DAYS) } : {}),
    ...(network !== undefined ? { network } : {}),
    ...(opts.cold ? { cold: true } : {}),
    ...(opts.onIdle ? { on_idle: opts.onIdle } : {}),
  };
}

export function registerSandbox(program: Command): void {
  const sandbox = program
    .command('sandbox')
    .description('Sandboxes: long-lived microVMs to run commands in (create, ls, inspect, fork, pause, resume, rm; then `monocore exec` and `monocore cp`)');

  withApiOption(
    sandbox
      .command('create')
      .description('Create a sandbox from an image and print its id once it accepts commands')
      .argument('<image>', 'OCI image reference (pulled on the host the sandbox is placed on)')
      .option('--cpus <n>', 'virtual CPUs (default 1)')
      .option('--ram <MiB>', 'guest memory in MiB (default 512)')
      .option('--disk <MiB>', 'writable disk in MiB (default 4096; sparse, but the host must have room for it)')
      .option('-e, --env <KEY=VALUE>', 'environment of every exec (repeatable; KEY alone copies it from here)', collect, [])
      .option('-w, --workdir <DIR>', 'default working directory of execs (default: the image WorkingDir, else /)')
      .option('-u, --user <USER>', 'default user of execs (default: the image User, else root)')
      .option('--timeout <duration>', 'maximum life: 600, 90s, 10m, 1h, 2d (default 1h); then it ends as expired')
      .option('--idle-timeout <duration>', 'end as expired after this long without an exec or file call (default: none)')
      .addOption(new Option('--on-idle <action>', 'what --idle-timeout does: expire (default) or pause (resume continues it)').choices(['expire', 'pause']))
      .addOption(new Option('--net <mode>', '"none" (default): loopback only; "outbound": the internet, never the host').choices(['none', 'outbound']))
      .option('--allow <ENTRY>', 'with --net outbound: reach only this DNS name, *.suffix, IPv4 address or CIDR range (repeatable; docs/NETWORK.md)', collect, [])
      .option('--cold', 'boot the guest kernel even when the image has a template to restore from (docs/SNAPSHOTS.md)')
      .option('--no-wait', 'print the id at once, while the sandbox is still being created')
      .option('--json', 'print the sandbox as JSON (the API\'s Sandbox object)')
      .addHelpText(
        'after',
        '\nExamples:\n  ID=$(monocore sandbox create python:3.12-slim --timeout 30m)\n  monocore exec $ID -- python -c "print(6 * 7)"\n  monocore sandbox rm $ID\n' +
          '  monocore sandbox create python:3.12-slim --net outbound --allow pypi.org --allow \'*.pythonhosted.org\'',
      ),
  ).action(async (image: string, opts: CreateOptions) => {
    const request = createRequest(image, opts);
    const client = clientFor(opts);
    try {
      if (process.stderr.isTTY && !opts.json) process.stderr.write(`creating a sandbox from ${image} (pull, boot)…\n`);
      const created = await client.createSandbox(request, { wait: opts.wait });
      process.stdout.write(opts.json ? `${JSON.stringify(created.info)}\n` : `${created.id}\n`);
    } finally {
      await client.close();
    }
  });

  withApiOption(
    sandbox
      .command('ls')
      .alias('list')
      .description('List sandboxes, oldest first (ended ones stay listed for the retention period, 1 hour by default)')
      .option('--status <list>', `only these statuses, comma-separated (${STATUSES.join(', ')})`)
      .option('-q, --quiet', 'only the ids')
      .option('--json', 'print JSON ({"sandboxes": [...]})'),
  ).action(async (opts: ApiCommandOptions & { status?: string; quiet?: boolean; json?: boolean }) => {
    const status = opts.status?.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const s of status ?? []) {
      if (!STATUSES.includes(s as SandboxStatus)) throw new MonocoreError('MC_USAGE', `--status: "${s}" is not a sandbox status (${STATUSES.join(', ')})`);
    }
    const client = clientFor(opts);
    try {
      const list = (await client.listSandboxes(status ? { status: status as SandboxStatus[] } : {})).map((s) => s.info);
      if (opts.json) process.stdout.write(`${JSON.stringify({ sandboxes: list })}\n`);
      else if (opts.quiet) process.stdout.write(list.map((s) => `${s.id}\n`).join(''));
      else process.stdout.write(renderSandboxTable(list));
    } finally {
      await client.close();
    }
  });

  withApiOption(
    sandbox
      .command('inspect')
      .description('Show one sandbox: status, why it ended, image, host, resources, lifetimes')
      .argument('<id>', 'sandbox id (sb-…)')
      .option('--json', "print the API's Sandbox object"),
  ).action(async (id: string, opts: ApiCommandOptions & { json?: boolean }) => {
    const client = clientFor(opts);
    try {
      const { info } = await client.getSandbox(id);
      process.stdout.write(opts.json ? `${JSON.stringify(info)}\n` : renderSandboxDetails(info));
    } finally {
      await client.close();
    }
  });

  withApiOption(
    sandbox
      .command('rm')
      .alias('kill')
      .description('Delete sandboxes: kill the VM, delete its disk, release its resources (exit 1 if any could not be deleted)')
      .argument('<ids...>', 'sandbox ids')
      .option('--json', 'print JSON ({"removed": [Sandbox…], "errors": [{id, code, message}…]})'),
  ).action(async (ids: string[], opts: ApiCommandOptions & { json?: boolean }) => {
    const client = clientFor(opts);
    const removed: SandboxRecord[] = [];
    const errors: Array<{ id: string; code: string; message: string }> = [];
    try {
      for (const id of ids) {
        try {
          removed.push(await client.deleteSandbox(id));
          if (!opts.json) process.stdout.write(`${id}\n`);
        } catch (err) {
          if (!(err instanceof MonocoreApiError) || err.code === 'MC_API_UNREACHABLE') throw err;
          errors.push({ id, code: err.code, message: err.message });
          if (!opts.json) process.stderr.write(`error: ${id}: ${err.message}\n`);
        }
      }
      if (opts.json) process.stdout.write(`${JSON.stringify({ removed, errors })}\n`);
      if (errors.length > 0) process.exitCode = ExitCode.Failure;
    } finally {
      await client.close();
    }
  });

  withApiOption(
    sandbox
      .command('fork')
      .description("Fork a running sandbox: new sandboxes continuing its memory, processes and files (prints their ids)")
      .argument('<id>', 'sandbox id (sb-…)')
      .option('-n, --count <n>', 'how many copies (1..16, default 1)')
      .option('--json', 'print JSON ({"sandboxes": [Sandbox…]})'),
  ).action(async (id: string, opts: ApiCommandOptions & { count?: string; json?: boolean }) => {
    const count = opts.count !== undefined ? intFlag('--count', opts.count, 1, 16) : 1;
    const client = clientFor(opts);
    try {
      const children = await (await client.getSandbox(id)).fork({ count });
      process.stdout.write(opts.json ? `${JSON.stringify({ sandboxes: children.map((c) => c.info) })}\n` : children.map((c) => `${c.id}\n`).join(''));
    } finally {
      await client.close();
    }
  });

  for (const [verb, description] of [
    ['pause', 'Pause a sandbox: save its VM to its host\'s disk and end its QEMU (no host memory used) until `sandbox resume`'],
    ['resume', 'Resume a paused sandbox on its host: its processes go on where they were'],
  ] as const) {
    withApiOption(
      sandbox
        .command(verb)
        .description(description)
        .argument('<id>', 'sandbox id (sb-…)')
        .option('--json', "print the API's Sandbox object"),
    ).action(async (id: string, opts: ApiCommandOptions & { json?: boolean }) => {
      const client = clientFor(opts);
      try {
        const sb = await client.getSandbox(id);
        const after = verb === 'pause' ? await sb.pause() : await sb.resume();
        process.stdout.write(opts.json ? `${JSON.stringify(after)}\n` : `${id} ${after.status}\n`);
      } finally {
        await client.close();
      }
    });
  }
}
