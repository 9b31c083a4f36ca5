import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import {
  findLibkrun,
  krunChildEntry,
  KRUN_CHILD_STATUS_FD,
  KRUN_LOG_LEVEL,
  LIBKRUN_PATH_ENV,
  type KrunChildConfig,
  type KrunChildMount,
  type KrunChildStatus,
} from '@monocore/native';
import { ErrorCodes, MonocoreError, type ErrorCode } from '../errors/index.js';
import { MonocoreHome } from '../home/index.js';
import type { GuestAgent } from './guest-agent.js';
import type { BackendAvailability, HypervisorBackend, VmHandle } from './hypervisor-backend.js';
import { ChildProcessWatch } from './child-process-watch.js';
import { removePidRecord } from './orphans.js';
import { fileTail } from './file-tail.js';
import { validateVmSpec } from './vm-spec-validation.js';
import type { VmExit, VmSpec } from './vm-spec.js';

/** Where libkrun's guest init looks for its JSON config (init/src/config.rs). */
const KRUN_CONFIG_GUEST_PATH = '.krun_config.json';

/** Opt-in to libkrun's TSI networking (needed for published ports): see docs/LIBKRUN.md before enabling. */
export const LIBKRUN_ALLOW_TSI_ENV = 'MONOCORE_LIBKRUN_ALLOW_TSI';

/** Host facts available() looks at; injectable so tests can describe other hosts. */
export interface LibkrunHostFacts {
  platform: NodeJS.Platform;
  exists(path: string): boolean;
  /** Read+write access to a device node. */
  canOpenRw(path: string): boolean;
  isRoot: boolean;
}

export interface LibkrunBackendOptions {
  home?: MonocoreHome;
  /** Explicit libkrun path (else MONOCORE_LIBKRUN_PATH, else the system search of @monocore/native). */
  libkrunPath?: string;
  /** Environment for discovery and for the VM process (default process.env). */
  env?: NodeJS.ProcessEnv;
  /**
   * Allow TSI (transparent socket impersonation). Published ports need it, but
   * it lets guest sockets connect out and listen as this host process. Default:
   * MONOCORE_LIBKRUN_ALLOW_TSI=1, else false (ports are refused).
   */
  allowTsi?: boolean;
  /** libkrun log level for the VM process (0 off .. 5 trace; default 1 = errors). */
  logLevel?: number;
  /** Boot watchdog when the spec sets none (default 30 s). */
  bootTimeoutMs?: number;
  /** Host facts for available() (default: this host). */
  host?: LibkrunHostFacts;
  /** How long available()'s boot probe may take before libkrun is declared unusable (default 20 s). */
  probeTimeoutMs?: number;
}

/**
 * The boot probe's command: a path no rootfs has. libkrun's guest init answers a
 * missing command with exit code 127 (125: its environment set-up failed, 126:
 * exec failed), and only a guest whose kernel booted and whose init ran can say
 * so: the VMM failing, a KVM that crawls (kvm_pvm) or a broken libkrunfw cannot.
 */
export const LIBKRUN_PROBE_COMMAND = '/.monocore-boot-probe';
export const LIBKRUN_PROBE_EXIT = 127;

const thisHost = (): LibkrunHostFacts => ({
  platform: process.platform,
  exists: existsSync,
  canOpenRw: (p) => {
    try {
      accessSync(p, constants.R_OK | constants.W_OK);
      return true;
    } catch {
      return false;
    }
  },
  isRoot: typeof process.getuid === 'function' && process.getuid() === 0,
});

/** Where a service's libkrun files live under its stateDir. */
export function libkrunPaths(stateDir: string): { dir: string; upper: string; work: string; root: string; config: string; krunConfig: string; vmmLog: string; console: string } {
  const dir = join(stateDir, 'libkrun');
  return {
    dir,
    /** The service's writes to its root (persist across restarts until the service is removed). */
    upper: join(dir, 'upper'),
    work: join(dir, 'work'),
    /** Mount point of the overlay; only populated inside the VM process's private mount namespace. */
    root: join(dir, 'root'),
    config: join(dir, 'vm.json'),
    /** The command as libkrun's init reads it from /.krun_config.json (when it cannot go on the kernel command line). */
    krunConfig: join(dir, 'krun_config.json'),
    /** libkrun's own log (krun_init_log), kept out of the service's stderr. */
    vmmLog: join(dir, 'vmm.log'),
    console: join(stateDir, 'console.log'),
  };
}

/** "", "root", "0", "root:root", "0:0" (and mixes) run as root: nothing to switch. */
export function isRootUser(user: string): boolean {
  return /^((root|0)(:(root|0))?)?$/.test(user);
}

function unsupported(spec: VmSpec, field: string, message: string): MonocoreError {
  return new MonocoreError('MC_VM_LIBKRUN_UNSUPPORTED', `vm ${JSON.stringify(spec.id)}: ${field}: ${message}`, { field, id: spec.id });
}

/**
 * How the command reaches libkrun's guest init. krun_set_exec (the documented
 * API) puts it on the kernel command line (src/libkrun/src/lib.rs: KRUN_INIT=
 * <path> unquoted, each argv/env entry wrapped in "...", argv after "--"). The
 * kernel's parser has no escape for '"' inside a quoted word, we do not trust
 * it with control characters (newlines, tabs) or empty words, and stock
 * kernels accept only 32 init arguments and 32 init environment entries. Commands that fit comfortably go that way;
 * anything else travels in a JSON file that libkrun's init reads when no
 * KRUN_INIT is set (/.krun_config.json, OCI "process" args/env/cwd), mounted
 * read-only into the root for the VM's life. Both reach execve unchanged.
 */
const CMDLINE_PLAIN = /^[^"\p{Cc}]*$/u;
const CMDLINE_WORD = /^[^"\s\p{Cc}]+$/u;
const CMDLINE_ENV_NAME = /^[A-Z_][A-Z0-9_]*=/;
/** Well under the kernel's 32 init args/envs (which also hold KRUN_* and HOME/TERM). */
const CMDLINE_MAX_ITEMS = 16;
/** Well under x86's 2048-byte command line (libkrun's own part is ~200 bytes). */
const CMDLINE_MAX_BYTES = 1024;

/** Why the command cannot take the kernel-command-line route, or undefined when it can. */
export function cmdlineTransportProblem(command: string, args: readonly string[], env: readonly string[], workdir: string): string | undefined {
  if (!CMDLINE_WORD.test(command)) return 'command contains whitespace, \'"\' or a control character';
  if (!CMDLINE_WORD.test(workdir)) return 'workdir contains whitespace, \'"\' or a control character';
  const badArg = args.findIndex((a) => a === '' || !CMDLINE_PLAIN.test(a));
  if (badArg >= 0) return `args[${badArg}] is empty or contains '"' or a control character`;
  const badEnv = env.findIndex((e) => !CMDLINE_PLAIN.test(e));
  if (badEnv >= 0) return `env[${badEnv}] contains '"' or a control character`;
  // On the command line, KEY=value is a boot parameter first: the kernel drops
  // names with a dot (module parameters) and consumes names it knows (root=,
  // init=, console=, quiet...), all lower case. Only plain upper-case names pass.
  const badName = env.findIndex((e) => !CMDLINE_ENV_NAME.test(e));
  if (badName >= 0) return `env[${badName}] has a name the kernel could take as a boot parameter`;
  if (args.length > CMDLINE_MAX_ITEMS || env.length > CMDLINE_MAX_ITEMS) return `more than ${CMDLINE_MAX_ITEMS} arguments or environment entries`;
  const bytes = [command, workdir, ...args, ...env].reduce((n, x) => n + Buffer.byteLength(x) + 3, 0);
  if (bytes > CMDLINE_MAX_BYTES) return `${bytes} bytes of command line`;
  return undefined;
}

/** Later entries win (VmSpec.env semantics); the kernel would keep duplicates, so collapse them here. */
function finalEnv(spec: VmSpec): string[] {
  const byKey = new Map<string, string>();
  for (const e of spec.env) {
    const key = e.slice(0, e.indexOf('='));
    byKey.delete(key); // keep the position of the last definition
    byKey.set(key, e);
  }
  // libkrun's init sets the guest hostname from HOSTNAME.
  if (!byKey.has('HOSTNAME')) byKey.set('HOSTNAME', `HOSTNAME=${spec.hostname ?? spec.id}`);
  return [...byKey.values()];
}

/**
 * The libkrun backend (Linux KVM; macOS HVF untested): one process per VM,
 * `node krun-child.js`, which makes the krun_* calls and then becomes the VM in
 * krun_start_enter. See docs/LIBKRUN.md for the model and its limits.
 *
 * Writable root: libkrun shares a host directory as the guest's / over
 * virtio-fs, so the per-service copy-on-write root is an overlayfs mount
 * (lower = the image rootfs, upper = <stateDir>/libkrun/upper) made inside the
 * VM process's own private mount namespace (`unshare --mount`); it vanishes
 * with that process. Volumes are bind mounts into that root, in the same
 * namespace: libkrun.h's advice for Linux ("use user_namespaces and
 * bind-mounts"), and the guest sees them through the root share.
 */
export class LibkrunBackend implements HypervisorBackend {
  readonly name = 'libkrun' as const;
  private readonly home: MonocoreHome;
  private readonly env: NodeJS.ProcessEnv;
  private located?: { path: string };
  private probed?: Promise<{ ok: boolean; ms: number; detail: string }>;

  constructor(private readonly opts: LibkrunBackendOptions = {}) {
    this.home = opts.home ?? new MonocoreHome();
    this.env = opts.env ?? process.env;
  }

  private get allowTsi(): boolean {
    return this.opts.allowTsi ?? this.env[LIBKRUN_ALLOW_TSI_ENV] === '1';
  }

  /** Finds libkrun; a success is remembered (a failure is retried: it may get installed). */
  private locate(): { path: string } | { reason: string } {
    if (this.located) return this.located;
    const env = this.opts.libkrunPath !== undefined ? { ...this.env, [LIBKRUN_PATH_ENV]: this.opts.libkrunPath } : this.env;
    const found = findLibkrun(env);
    if (!found.lib) return { reason: found.reason };
    this.located = { path: found.lib.path };
    return this.located;
  }

  async available(): Promise<BackendAvailability> {
    const host = this.opts.host ?? thisHost();
    if (host.platform !== 'linux' && host.platform !== 'darwin') {
      return { available: false, reason: `libkrun runs on Linux (KVM) and macOS (HVF) only; this host is ${host.platform}` };
    }
    if (host.platform === 'darwin') {
      return {
        available: false,
        reason: 'the libkrun backend needs a Linux mount namespace for the per-service copy-on-write root; macOS is not supported yet (docs/LIBKRUN.md)',
      };
    }
    const lib = this.locate();
    if ('reason' in lib) return { available: false, reason: lib.reason };
    if (!host.exists('/dev/kvm')) return { available: false, reason: 'libkrun needs KVM and /dev/kvm does not exist (load kvm_intel or kvm_amd)' };
    if (!host.canOpenRw('/dev/kvm')) return { available: false, reason: '/dev/kvm is not readable and writable by this user (add it to the kvm group)' };
    if (host.exists('/sys/module/kvm_pvm')) {
      // PLATFORM.md: under kvm_pvm a guest kernel crawls and never reaches init.
      return {
        available: false,
        reason: "this host's KVM is kvm_pvm (/sys/module/kvm_pvm): guests do not boot usably under it, and libkrun has no software fallback; use the qemu backend (TCG)",
      };
    }
    if (!host.exists('/usr/bin/unshare') && !host.exists('/bin/unshare')) {
      return { available: false, reason: 'unshare (util-linux) not found: needed for the per-VM mount namespace' };
    }
    if (!host.isRoot) {
      return { available: false, reason: 'the libkrun backend mounts the per-service overlay root in a private mount namespace and needs root (CAP_SYS_ADMIN)' };
    }
    // Everything a static look can check is there; now prove it boots (as QemuBackend does for
    // KVM): a libkrun that cannot boot a guest here must never be preferred over QEMU.
    this.probed ??= this.probe(this.opts.probeTimeoutMs ?? 20_000);
    const p = await this.probed;
    if (!p.ok) return { available: false, reason: `libkrun ${lib.path} failed its boot probe: ${p.detail}` };
    return { available: true, accel: 'kvm', detail: `libkrun ${lib.path}; boot probe ok: ${p.detail}` };
  }

  /**
   * Boots one VM whose command does not exist and expects libkrun's guest init to
   * report exit 127 (LIBKRUN_PROBE_EXIT) within `timeoutMs`: the whole path (library,
   * KVM, libkrunfw's kernel, the guest init, our child process and mount namespace) works.
   */
  async probe(timeoutMs = 20_000): Promise<{ ok: boolean; ms: number; detail: string }> {
    const t0 = Date.now();
    const dir = await mkdtemp(join(tmpdir(), 'mc-krun-probe-'));
    try {
      const rootfs = join(dir, 'rootfs');
      // The mount points libkrun's init expects in a root, and nothing else.
      for (const d of ['proc', 'sys', 'dev', 'tmp', 'run', 'etc']) await mkdir(join(rootfs, d), { recursive: true });
      const h = await this.start({
        id: 'krun-probe',
        rootfs,
        command: LIBKRUN_PROBE_COMMAND,
        args: [],
        env: [],
        cpus: 1,
        ramMib: 128,
        volumes: [],
        ports: [],
        stateDir: join(dir, 'state'),
        network: { mode: 'none' },
        bootTimeoutMs: timeoutMs,
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        void h.kill();
      }, timeoutMs);
      const exit = await h.wait();
      clearTimeout(timer);
      const ms = Date.now() - t0;
      if (exit.reason === 'exited' && exit.exitCode === LIBKRUN_PROBE_EXIT) {
        return { ok: true, ms, detail: `the guest init answered in ${ms} ms` };
      }
      if (timedOut) return { ok: false, ms, detail: `no answer from the guest within ${timeoutMs} ms` };
      return {
        ok: false,
        ms,
        detail: `expected the guest init's exit ${LIBKRUN_PROBE_EXIT} for a missing command, got ${exit.reason}${exit.exitCode !== null ? ` (exit ${exit.exitCode})` : ''}${exit.detail ? `: ${exit.detail.split('\n')[0]}` : ''}`,
      };
    } catch (err) {
      return { ok: false, ms: Date.now() - t0, detail: err instanceof Error ? err.message : String(err) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async start(spec: VmSpec): Promise<LibkrunVmHandle> {
    validateVmSpec(spec);
    if (process.platform !== 'linux') {
      throw unsupported(spec, 'rootfs', 'the per-service copy-on-write root needs a Linux mount namespace (docs/LIBKRUN.md)');
    }
    if (spec.sandbox) {
      throw new MonocoreError('MC_VM_AGENT_UNSUPPORTED', `vm ${JSON.stringify(spec.id)}: sandbox: a sandbox is served by the guest agent, which the libkrun backend does not have; use the qemu backend (MONOCORE_BACKEND=qemu)`, { field: 'sandbox', id: spec.id });
    }
    if (spec.user !== undefined && !isRootUser(spec.user)) {
      throw unsupported(spec, 'user', `${JSON.stringify(spec.user)}: libkrun's guest init has no user switch in our transport, so the command would run as root; use the qemu backend (docs/LIBKRUN.md)`);
    }
    if (spec.diskMib !== undefined) {
      throw unsupported(spec, 'diskMib', "libkrun's writable layer is a host directory (an overlay upper) with no size limit; use the qemu backend for a bounded disk (docs/LIBKRUN.md)");
    }
    if (spec.network.mode === 'group') {
      throw new MonocoreError(
        'MC_VM_NETWORK_UNSUPPORTED',
        `vm ${JSON.stringify(spec.id)}: network: group networks are not implemented by the libkrun backend (it would need a passt/gvproxy segment per group); use the qemu backend`,
        { field: 'network', id: spec.id },
      );
    }
    if (spec.ports.length > 0) {
      if (!this.allowTsi) {
        throw unsupported(
          spec,
          'ports',
          `publishing ports with libkrun needs TSI, which also lets the guest connect out and listen on host ports as the VM process; refused unless ${LIBKRUN_ALLOW_TSI_ENV}=1 (docs/LIBKRUN.md)`,
        );
      }
      const bound = spec.ports.findIndex((p) => p.bindAddress !== undefined);
      if (bound >= 0) {
        throw unsupported(spec, `ports[${bound}].bindAddress`, "libkrun's port map has no bind address (the guest's listen address is used)");
      }
    }
    const lib = this.locate();
    if ('reason' in lib) throw new MonocoreError('MC_VM_LIBKRUN_NOT_FOUND', lib.reason, { id: spec.id });

    const paths = libkrunPaths(spec.stateDir);
    await mkdir(paths.upper, { recursive: true });
    await mkdir(paths.work, { recursive: true });
    await mkdir(paths.root, { recursive: true });
    for (const p of [spec.rootfs, paths.upper, paths.work]) {
      if (/[,:\\]/.test(p)) throw unsupported(spec, 'stateDir', `${JSON.stringify(p)}: overlayfs options cannot express paths containing ',', ':' or '\\'`);
    }
    await writeFile(paths.console, '');

    const mounts: KrunChildMount[] = [{ kind: 'overlay', lower: spec.rootfs, upper: paths.upper, work: paths.work, target: paths.root }];
    for (const v of spec.volumes) {
      mounts.push({ kind: 'bind', source: v.host, target: join(paths.root, posix.normalize(v.guest)), readOnly: v.readOnly ?? false });
    }
    const env = finalEnv(spec);
    const workdir = spec.workdir ?? '/';
    const viaFile = cmdlineTransportProblem(spec.command, spec.args, env, workdir);
    if (viaFile !== undefined) {
      // Docker image-config keys, which both of libkrun's inits read: the Rust init
      // (init/src/config.rs: aliases Cmd/Env/WorkingDir) and the older C init, whose
      // jsmn scan matches key names anywhere in the token stream. Key order matters
      // for the C init: Env and WorkingDir before Cmd, so that an argument spelled
      // "WorkingDir" or "args" can never be taken for a key (each key is parsed once).
      // Both: argv from Cmd when KRUN_INIT is unset; env entries not already set
      // (HOME/TERM always); chdir to WorkingDir when KRUN_WORKDIR is unset.
      const krunConfig = { Env: env, WorkingDir: workdir, Cmd: [spec.command, ...spec.args] };
      await writeFile(paths.krunConfig, JSON.stringify(krunConfig), { mode: 0o644 });
      mounts.push({ kind: 'bind-file', source: paths.krunConfig, target: join(paths.root, KRUN_CONFIG_GUEST_PATH), readOnly: true });
    } else {
      await rm(paths.krunConfig, { force: true });
    }
    const config: KrunChildConfig = {
      libkrunPath: lib.path,
      logLevel: this.opts.logLevel ?? KRUN_LOG_LEVEL.ERROR,
      logFile: paths.vmmLog,
      vcpus: spec.cpus,
      ramMib: spec.ramMib,
      mounts,
      root: paths.root,
      virtiofs: [],
      ...(viaFile === undefined ? { exec: { path: spec.command, args: spec.args, env }, workdir } : {}),
      network: spec.ports.length > 0 ? { mode: 'tsi', portMap: spec.ports.map((p) => `${p.host}:${p.guest}`) } : { mode: 'none' },
      consoleOutput: paths.console,
      separateStdio: true,
      parentPid: process.pid,
    };
    await writeFile(paths.config, JSON.stringify(config), { mode: 0o600 });

    // A private mount namespace: the overlay and bind mounts exist only for
    // this VM process and disappear with it (no leaked mounts after a crash).
    // unshare execs node, so the child's pid is the VM's pid.
    // The image rootfs rides along on the command line (the child ignores it) so
    // `image prune` sees that this process uses it (rootfs/rootfs-in-use.ts).
    const argv = ['unshare', '--mount', '--propagation', 'private', '--', process.execPath, krunChildEntry(), paths.config, `--image-rootfs=${spec.rootfs}`];
    const t0 = Date.now();
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: this.env });
    } catch (e) {
      throw new MonocoreError('MC_VM_START_FAILED', `${spec.id}: cannot spawn ${argv[0]}: ${(e as Error).message}`, { id: spec.id }, { cause: e });
    }
    const handle = new LibkrunVm({
      spec,
      child,
      t0,
      paths,
      home: this.home,
      bootTimeoutMs: spec.bootTimeoutMs ?? this.opts.bootTimeoutMs ?? 30_000,
      commandTransport: viaFile === undefined ? 'krun_set_exec' : 'krun_config.json',
    });
    await handle.spawned;
    return handle;
  }
}

export interface LibkrunVmHandle extends VmHandle {
  readonly consoleLog: string;
  /** krun_* calls the VM process made (from its "configured" report). */
  readonly calls: readonly string[];
  /** ms from spawn to the VM process entering krun_start_enter. */
  readonly enterMs: number | undefined;
  /** How the command reached libkrun: krun_set_exec (kernel command line) or /.krun_config.json. */
  readonly commandTransport: 'krun_set_exec' | 'krun_config.json';
}

interface LibkrunVmInit {
  spec: VmSpec;
  child: ChildProcess;
  t0: number;
  paths: ReturnType<typeof libkrunPaths>;
  home: MonocoreHome;
  bootTimeoutMs: number;
  commandTransport: 'krun_set_exec' | 'krun_config.json';
}

/** The ways a VM process can end, before we describe it as a VmExit. */
class LibkrunVm implements LibkrunVmHandle {
  readonly id: string;
  readonly pid: number;
  readonly started: Promise<void>;
  readonly consoleLog: string;
  readonly spawned: Promise<void>;
  calls: readonly string[] = [];
  enterMs: number | undefined;
  readonly commandTransport: 'krun_set_exec' | 'krun_config.json';

  private readonly watch: ChildProcessWatch;
  private entered = false;
  private ended = false;
  private setupError?: { code: string; message: string; details: Record<string, unknown> };
  private requested?: 'stopped' | 'killed' | 'boot-timeout';
  private childStderr = '';
  private preEnterStderr: Buffer[] = [];
  private watchdog?: NodeJS.Timeout;

  constructor(private readonly s: LibkrunVmInit) {
    this.id = s.spec.id;
    this.pid = s.child.pid ?? -1;
    this.consoleLog = s.paths.console;
    this.commandTransport = s.commandTransport;
    const child = s.child;
    const watch = new ChildProcessWatch(child, {
      goneOn: 'close',
      onSpawnError: (e) => {
        this.childStderr += `spawn error: ${e.message}\n`;
      },
      home: s.home,
      record: { id: s.spec.id, backend: 'libkrun' },
    });
    this.watch = watch;
    this.started = watch.started;
    this.spawned = watch.spawned;
    const gone = watch.gone;

    // Before krun_start_enter, stderr can only carry a crash of the VM process
    // itself (setup errors come on fd 3), after it the guest's stderr. Hold
    // what arrives before "entering": flushed to the service's stderr once the
    // VM has started (the pipes are not ordered against fd 3), kept as the
    // diagnostic if it never does.
    child.stdout?.on('data', (d: Buffer) => {
      if (s.spec.stdout) s.spec.stdout.write(d);
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (this.entered) s.spec.stderr?.write(d);
      else this.preEnterStderr.push(d);
    });
    let buf = '';
    (child.stdio[KRUN_CHILD_STATUS_FD] as Readable | undefined)?.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.onStatus(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });

    this.watchdog = setTimeout(() => {
      if (!this.entered && !this.ended) {
        this.requested = 'boot-timeout';
        child.kill('SIGKILL');
      }
    }, s.bootTimeoutMs);

    void (async () => {
      const { code, signal } = await gone;
      this.ended = true;
      clearTimeout(this.watchdog);
      if (!this.entered) this.childStderr += Buffer.concat(this.preEnterStderr).toString('utf8').slice(0, 8192);
      if (watch.pidFile) removePidRecord(watch.pidFile);
      await rm(s.paths.config, { force: true }).catch(() => {});
      const exit = this.describeExit(code, signal);
      if (!this.entered) {
        const id = s.spec.id;
        const se = this.setupError;
        const err = se
          ? new MonocoreError(se.code in ErrorCodes ? (se.code as ErrorCode) : 'MC_VM_LIBKRUN_SETUP_FAILED', `${id}: ${se.message}`, { id, ...se.details, exit })
          : new MonocoreError(
              exit.reason === 'boot-timeout' ? 'MC_VM_BOOT_TIMEOUT' : 'MC_VM_START_FAILED',
              `${id}: the VM did not start (${exit.reason})${exit.detail ? `: ${exit.detail}` : ''}`,
              { id, exit },
            );
        watch.rejectStarted(err);
      }
      watch.resolveExit(exit);
    })();
  }

  private onStatus(line: string): void {
    let st: KrunChildStatus;
    try {
      st = JSON.parse(line) as KrunChildStatus;
    } catch {
      return;
    }
    if (st.event === 'configured') {
      this.calls = st.calls;
      // The child has read its config: the file (with the guest env) is no longer needed.
      void rm(this.s.paths.config, { force: true }).catch(() => {});
    } else if (st.event === 'entering') {
      this.entered = true;
      this.enterMs = Date.now() - this.s.t0;
      for (const d of this.preEnterStderr) this.s.spec.stderr?.write(d);
      this.preEnterStderr = [];
      clearTimeout(this.watchdog);
      this.watch.resolveStarted();
    } else if (st.event === 'error') {
      this.setupError = st;
    }
  }

  private describeExit(code: number | null, signal: NodeJS.Signals | null): VmExit {
    const signo = signal ? osConstants.signals[signal] : 0;
    if (this.requested === 'boot-timeout') {
      return { exitCode: null, reason: 'boot-timeout', detail: `the VM process did not reach krun_start_enter within ${this.s.bootTimeoutMs} ms` };
    }
    if (!this.entered) {
      const why = this.setupError
        ? `${this.setupError.code}: ${this.setupError.message}`
        : `VM process exited (${signal ? `signal ${signal}` : `code ${code}`}) before the VM started${this.childStderr.trim() ? `: ${this.childStderr.trim()}` : ''}`;
      return { exitCode: null, reason: this.requested === 'killed' || this.requested === 'stopped' ? this.requested : 'hypervisor-error', detail: why };
    }
    if (signal) {
      // The VMM process was signalled: by us (stop/kill) or by someone else.
      const reason = this.requested ?? 'hypervisor-error';
      return { exitCode: 128 + signo, reason, detail: `VM process ended by ${signal}${reason === 'hypervisor-error' ? `; console tail:\n${fileTail(this.consoleLog, 3000).trim()}` : ''}` };
    }
    // libkrun exits the process with the workload's exit code (125/126/127 for init failures).
    const exit: VmExit = { exitCode: code, reason: this.requested === 'stopped' ? 'stopped' : 'exited' };
    if (code === 125 || code === 126 || code === 127) {
      exit.detail = { 125: 'libkrun init could not set up the guest environment', 126: 'the command exists but could not be executed', 127: 'the command was not found in the guest' }[code];
    }
    return exit;
  }

  wait(): Promise<VmExit> {
    return this.watch.exit;
  }

  /**
   * SIGTERM to the VM process, SIGKILL after timeoutMs. libkrun does not
   * forward SIGTERM into the guest: the VMM itself ends, and with it the guest
   * (docs/LIBKRUN.md, "stop").
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<VmExit> {
    if (this.ended) return this.watch.exit;
    this.requested ??= 'stopped';
    this.s.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (!this.ended) {
        this.requested = 'killed';
        this.s.child.kill('SIGKILL');
      }
    }, options.timeoutMs ?? 10_000);
    const exit = await this.watch.exit;
    clearTimeout(timer);
    return exit;
  }

  kill(): Promise<VmExit> {
    if (!this.ended) {
      this.requested = 'killed';
      this.s.child.kill('SIGKILL');
    }
    return this.watch.exit;
  }
  /** libkrun's guest is its own init (no monocore agent, no agent port): docs/LIBKRUN.md. */
  agent(): Promise<GuestAgent> {
    return Promise.reject(
      new MonocoreError('MC_VM_AGENT_UNSUPPORTED', `vm ${JSON.stringify(this.id)}: the libkrun backend has no guest agent (no exec, files or identity refresh); use the qemu backend (MONOCORE_BACKEND=qemu)`, { id: this.id, backend: 'libkrun' }),
    );
  }

}

