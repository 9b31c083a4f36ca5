import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { Option, type Command } from 'commander';
import { ImageStore, formatPlatform, hostPlatform, imageProcess, imageRootfsTrusted, parseImageReference, type PulledImage } from '@monocore/engine/oci/local';
import { MonocoreError, isMonocoreError } from '@monocore/engine/errors';
import { MonocoreHome } from '@monocore/engine/home';
import { EgressAllowList, outboundNetwork, selectBackend, type BackendName, type VmExit, type VmSpec } from '@monocore/engine/vm';
import { parseEnvFlag } from '../flags/env-flag.js';
import { intFlag } from '../flags/int-flag.js';
import { progressReporter } from './pull-progress.js';

interface RunOptions {
  cpus: string;
  ram: string;
  env: string[];
  volume: string[];
  publish: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  json?: boolean;
  quiet?: boolean;
  backend?: string;
  bootTimeout: string;
  pull: 'missing' | 'always';
  net: 'none' | 'outbound';
  allow: string[];
  cold?: boolean;
}

const usage = (message: string, details: Record<string, unknown> = {}): MonocoreError => new MonocoreError('MC_USAGE', message, details);
const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** -v HOST:GUEST[:ro|:rw]; HOST may be relative to the current directory and must exist. */
export function parseVolumeFlag(value: string, cwd = process.cwd()): { host: string; guest: string; readOnly: boolean } {
  const parts = value.split(':');
  let mode: string | undefined;
  if (parts.length === 3) mode = parts.pop();
  if (parts.length !== 2 || !parts[0] || !parts[1] || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw usage(`-v ${JSON.stringify(value)}: expected HOST:GUEST or HOST:GUEST:ro`);
  }
  const host = resolve(cwd, parts[0]);
  if (!existsSync(host) || !statSync(host).isDirectory()) throw usage(`-v ${JSON.stringify(value)}: host directory ${host} does not exist`);
  if (!isAbsolute(parts[1])) throw usage(`-v ${JSON.stringify(value)}: the guest path must be absolute`);
  return { host, guest: parts[1], readOnly: mode === 'ro' };
}

/** -p [BIND:]HOST:GUEST (TCP); binds 127.0.0.1 unless BIND is given. */
export function parsePortFlag(value: string): { host: number; guest: number; bindAddress?: string } {
  const parts = value.replace(/\/tcp$/, '').split(':');
  const bind = parts.length === 3 ? parts.shift() : undefined;
  if (parts.length !== 2) throw usage(`-p ${JSON.stringify(value)}: expected HOST:GUEST or BIND:HOST:GUEST`);
  const [h, g] = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
  if (!h || !g || h > 65535 || g > 65535) throw usage(`-p ${JSON.stringify(value)}: ports must be integers in 1..65535`);
  return bind ? { host: h, guest: g, bindAddress: bind } : { host: h, guest: g };
}

class Capture extends Writable {
  private chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('Run one command in a throwaway microVM (like `docker run --rm`) and exit with its exit code')
    .argument('<image>', 'image reference (pulled if not present)')
    .argument('[command...]', 'command and arguments (after --); default: the image Entrypoint + Cmd')
    .option('--cpus <n>', 'virtual CPUs', '1')
    .option('--ram <MiB>', 'guest memory in MiB', '512')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable; KEY alone copies it from here)', collect, [])
    .option('-v, --volume <HOST:GUEST[:ro]>', 'share a host directory read-write (repeatable)', collect, [])
    .option('-p, --publish <[BIND:]HOST:GUEST>', 'forward a TCP port from the host (127.0.0.1 unless BIND; repeatable)', collect, [])
    .option('-w, --workdir <DIR>', 'working directory in the guest (default: the image WorkingDir, else /)')
    .option('-u, --user <USER>', 'run the command as USER (name, uid, name:group, uid:gid; default: the image User, else root)')
    .option('--entrypoint <PATH>', 'replace the image Entrypoint')
    .addOption(new Option('--backend <name>', 'hypervisor backend').choices(['auto', 'qemu', 'libkrun']))
    .option('--boot-timeout <ms>', 'fail if the command has not started within this time', '60000')
    .addOption(new Option('--pull <when>', 'pull the image: "missing" (default: use a local copy without asking the registry) or "always"').choices(['missing', 'always']).default('missing'))
    .addOption(new Option('--net <mode>', '"none" (default): no network but the forwarded ports; "outbound": also the internet, never the host (root, passt, nftables)').choices(['none', 'outbound']).default('none'))
    .option('--allow <ENTRY>', 'with --net outbound: reach only this DNS name, *.suffix, IPv4 address or CIDR range (repeatable; docs/NETWORK.md)', collect, [])
    .option('--cold', 'boot the guest kernel even when the image has a template to restore from (docs/SNAPSHOTS.md)')
    .option('--json', 'capture output and print one JSON result on stdout')
    .option('-q, --quiet', 'no pull progress')
    .addHelpText(
      'after',
      '\nExamples:\n  monocore run alpine -- echo hello\n  monocore run -p 8080:80 -v ./site:/www busybox -- httpd -f -p 80 -h /www\n' +
        '\nThe command\'s stdout/stderr are streamed as they come; the exit code is the command\'s\n' +
        '(126 not executable, 127 not found, 128+N killed by signal N). Nothing is kept afterwards.\n' +
        'The guest gets no network except the forwarded ports, unless --net outbound (docs/NETWORK.md),\n' +
        'with --allow pypi.org --allow \'*.pythonhosted.org\' limited to those names and ranges.',
    )
    .action(async (image: string, command: string[], opts: RunOptions) => {
      try {
        parseImageReference(image);
      } catch (err) {
        throw isMonocoreError(err) ? usage(err.message, err.details) : err;
      }
      const cpus = intFlag('--cpus', opts.cpus, 1, 64);
      const ramMib = intFlag('--ram', opts.ram, 64, 1 << 20);
      const bootTimeoutMs = intFlag('--boot-timeout', opts.bootTimeout, 1, 3_600_000);
      const envFlags = opts.env.map((e) => parseEnvFlag(e)).filter((e): e is string => e !== undefined);
      const volumes = opts.volume.map((v) => parseVolumeFlag(v));
      const ports = opts.publish.map((p) => parsePortFlag(p));
      if (opts.workdir !== undefined && !opts.workdir.startsWith('/')) throw usage(`-w ${JSON.stringify(opts.workdir)}: must be an absolute guest path`);
      if (opts.allow.length > 0 && opts.net !== 'outbound') throw usage('--allow limits the way out: it needs --net outbound');
      let allow: string[] | undefined;
      try {
        allow = opts.allow.length > 0 ? EgressAllowList.parse(opts.allow, '--allow').toStrings() : undefined;
      } catch (err) {
        throw isMonocoreError(err) ? usage(err.message, err.details) : err;
      }

      const home = new MonocoreHome();
      const t0 = Date.now();
      const progress = opts.quiet || opts.json ? undefined : progressReporter(image);
      let pulled: PulledImage | undefined;
      if (opts.pull === 'missing') {
        // Like `docker run`: an image already here is used without asking the registry.
        const rec = await new ImageStore(home).find(parseImageReference(image).toString(), formatPlatform(hostPlatform()));
        // The rootfs must exist and be trusted (not an unconfirmed tree from before a reboot).
        if (rec && existsSync(rec.rootfs) && (await imageRootfsTrusted(dirname(rec.rootfs)))) pulled = { reference: rec.reference, manifestDigest: rec.manifestDigest, platform: rec.platform, rootfs: rec.rootfs, config: rec.config };
      }
      if (!pulled) {
        // The registry client and the unpacker load only when a pull is needed (~0.1 s of start-up).
        const { pullImage, closeDefaultRegistryClient } = await import('@monocore/engine/oci');
        try {
          pulled = await pullImage(image, { home, ...(progress ? { onProgress: (p) => progress.update(p) } : {}) });
        } finally {
          progress?.finish();
          await closeDefaultRegistryClient();
        }
      }
      const pullMs = Date.now() - t0;

      // Docker's rules, in their one home (services and sandboxes use the same): COMMAND replaces
      // the image Cmd; --entrypoint replaces the Entrypoint (and drops the Cmd); -e wins per key.
      const proc = imageProcess(pulled.config, {
        ...(opts.entrypoint !== undefined ? { entrypoint: [opts.entrypoint] } : {}),
        cmd: command,
        env: envFlags,
        ...(opts.workdir !== undefined ? { workdir: opts.workdir } : {}),
        ...(opts.user !== undefined ? { user: opts.user } : {}),
      });
      const argv = proc.argv;
      if (argv.length === 0) throw usage(`${image} has no Entrypoint or Cmd: give a command after --`);

      const { backend } = await selectBackend({ home, ...(opts.backend && opts.backend !== 'auto' ? { prefer: opts.backend as BackendName } : {}) });
      const id = `run-${randomBytes(4).toString('hex')}`;
      const stateDir = join(home.tmpDir, id);
      const capOut = opts.json ? new Capture() : undefined;
      const capErr = opts.json ? new Capture() : undefined;
      const spec: VmSpec = {
        id,
        rootfs: pulled.rootfs,
        command: argv[0]!,
        args: argv.slice(1),
        env: proc.env,
        workdir: proc.workdir,
        ...(proc.user !== undefined ? { user: proc.user } : {}),
        hostname: id,
        cpus,
        ramMib,
        volumes,
        ports,
        stateDir,
        discardDiskOnExit: true, // --rm: the state dir goes below
        // Outbound: a one-member group (its segment stays private) with local_only = false, limited to --allow.
        network: opts.net === 'outbound' ? outboundNetwork(id, allow) : { mode: 'none' },
        stdout: capOut ?? process.stdout,
        stderr: capErr ?? process.stderr,
        bootTimeoutMs,
        ...(opts.cold ? { coldBoot: true } : {}),
      };
      let exit: VmExit;
      let boot: { from: string; reason: string } | undefined;
      const bootStart = Date.now();
      try {
        const handle = await backend.start(spec);
        boot = handle.boot;
        if (boot && process.env.MONOCORE_LOG_LEVEL === 'debug') process.stderr.write(`monocore run: boot: ${boot.from} (${boot.reason})\n`);
        // Ctrl-C / SIGTERM: stop the guest command gracefully (a second one kills it).
        let signals = 0;
        const onSignal = (): void => {
          signals++;
          void (signals === 1 ? handle.stop({ timeoutMs: 10_000 }) : handle.kill());
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        try {
          exit = await handle.wait();
          const timings = handle.timings;
          if (timings && process.env.MONOCORE_LOG_LEVEL === 'debug') process.stderr.write(`monocore run: timings (ms since QEMU started): ${JSON.stringify(timings)}\n`);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      } finally {
        await rm(stateDir, { recursive: true, force: true }); // --rm: the writable disk goes
      }
      const code = exit.exitCode ?? (exit.reason === 'killed' ? 137 : 1);
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({
            image: pulled.reference,
            digest: pulled.manifestDigest,
            backend: backend.name,
            command: argv,
            exitCode: exit.exitCode,
            reason: exit.reason,
            ...(exit.detail ? { detail: exit.detail } : {}),
            stdout: capOut!.text,
            stderr: capErr!.text,
            ...(boot ? { boot } : {}),
            pullMs,
            runMs: Date.now() - bootStart,
          })}\n`,
        );
      } else if (exit.exitCode === null) {
        process.stderr.write(`monocore run: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
      }
      process.exitCode = code;
    });
}
