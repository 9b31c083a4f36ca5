import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendAvailability, VmExit, VmHandle, VmSpec } from '@monocore/engine';

/**
 * NOT A SANDBOX. Runs a service's command as a plain host process, with no VM
 * and no isolation at all. It exists so the scheduler (flows, dependencies,
 * restarts, rescheduling across hosts) can be exercised at scale with tiny
 * commands (`/bin/true`, `sleep`) where a TCG boot costs ~2 s each, and for
 * development. Never selected automatically: only `startWorker({ backend:
 * 'host-process' })` or MONOCORE_WORKER_BACKEND=host-process enables it, and
 * the worker logs a warning when it does.
 *
 * The command runs on the host's filesystem (the image rootfs is ignored),
 * with exactly the spec's environment (plus PATH when the spec has none) and
 * through `setpriv --pdeathsig KILL`, so it dies with its worker like a QEMU
 * process does.
 */
export class HostProcessBackend {
  readonly name = 'host-process' as const;

  async available(): Promise<BackendAvailability> {
    return existsSync('/usr/bin/setpriv') || existsSync('/bin/setpriv')
      ? { available: true, accel: 'none', detail: 'host processes, no isolation (scheduler tests only)' }
      : { available: false, reason: 'setpriv (util-linux) not found' };
  }

  async start(spec: VmSpec): Promise<VmHandle> {
    const env: Record<string, string> = {};
    for (const kv of spec.env) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
    env.HOSTNAME ??= spec.hostname ?? spec.id;
    const cwd = spec.workdir && existsSync(spec.workdir) ? spec.workdir : '/';
    // Like a guest init, fail the start (exit 127) when the command cannot be executed.
    const exe = resolveCommand(spec.command, env.PATH);
    if (!exe) return new FailedHandle(spec.id, `${spec.command}: command not found or not executable`);
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', spec.command, ...spec.args], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new HostProcessHandle(spec, child);
  }
}

class HostProcessHandle implements VmHandle {
  readonly id: string;
  readonly started: Promise<void>;
  readonly #exit: Promise<VmExit>;
  #reason: VmExit['reason'] = 'exited';

  constructor(
    spec: VmSpec,
    readonly child: ChildProcess,
  ) {
    this.id = spec.id;
    if (spec.stdout) child.stdout?.pipe(spec.stdout as NodeJS.WritableStream, { end: false });
    else child.stdout?.resume();
    if (spec.stderr) child.stderr?.pipe(spec.stderr as NodeJS.WritableStream, { end: false });
    else child.stderr?.resume();
    this.started = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => reject(err));
    });
    this.started.catch(() => {});
    this.#exit = new Promise<VmExit>((resolve) => {
      child.once('error', (err) => resolve({ exitCode: null, reason: 'hypervisor-error', detail: err.message }));
      child.once('close', (code, signal) => {
        const exitCode = code ?? (signal ? 128 + signalNumber(signal) : null);
        resolve({ exitCode, reason: this.#reason });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  wait(): Promise<VmExit> {
    return this.#exit;
  }

  async stop(options: { timeoutMs?: number } = {}): Promise<VmExit> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.#reason = 'stopped';
      this.child.kill('SIGTERM');
      const t = setTimeout(() => {
        this.#reason = 'killed';
        this.child.kill('SIGKILL');
      }, options.timeoutMs ?? 10_000);
      void this.#exit.finally(() => clearTimeout(t));
    }
    return this.#exit;
  }

  async kill(): Promise<VmExit> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.#reason = 'killed';
      this.child.kill('SIGKILL');
    }
    return this.#exit;
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
  return table[signal] ?? 0;
}

function resolveCommand(command: string, path: string): string | undefined {
  const candidates = command.includes('/') ? [command] : path.split(':').map((d) => join(d, command));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The handle of a command that could not be executed: never started, exit 127. */
class FailedHandle implements VmHandle {
  readonly pid = -1;
  readonly started: Promise<void>;
  readonly #exit: Promise<VmExit>;

  constructor(
    readonly id: string,
    detail: string,
  ) {
    this.started = Promise.reject(new Error(detail));
    this.started.catch(() => {});
    this.#exit = Promise.resolve({ exitCode: 127, reason: 'exited', detail });
  }

  wait(): Promise<VmExit> {
    return this.#exit;
  }

  stop(): Promise<VmExit> {
    return this.#exit;
  }

  kill(): Promise<VmExit> {
    return this.#exit;
  }
}
