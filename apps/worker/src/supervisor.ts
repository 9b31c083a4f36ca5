import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import {
  MonocoreError,
  RedisLogSink,
  RotatingLogWriter,
  buildVmSpec,
  isMonocoreError,
  type HypervisorBackend,
  type ImageRuntime,
  type LogRetentionPolicy,
  type MonocoreHome,
  type ResolvedService,
  type StateStore,
  type VmExit,
  type VmHandle,
  type VmNetwork,
} from '@monocore/engine';

/** A backend as the supervisor sees it: a hypervisor (QEMU, libkrun) or an injected backend object. */
export interface ServiceBackend {
  readonly name: string;
  available: HypervisorBackend['available'];
  start: HypervisorBackend['start'];
}

export interface BootInput {
  resolved: ResolvedService;
  image?: ImageRuntime;
  network: VmNetwork;
  epoch: number;
  configHash: string;
  deploymentId: string;
}

interface Entry extends BootInput {
  name: string;
  handle?: VmHandle;
  restarts: number;
  stopping: boolean;
  restartTimer?: NodeJS.Timeout;
  /** When the current VM reported started (ms). */
  upSince: number;
  out: RotatingLogWriter;
  err: RotatingLogWriter;
  sink: RedisLogSink;
  tail: string[];
}

export interface SupervisorOptions {
  hostId: string;
  home: MonocoreHome;
  backend: ServiceBackend;
  state: StateStore;
  redis: Redis;
  logger: Logger;
  retention: LogRetentionPolicy;
  /** First restart delay; doubles per restart up to restartBackoffMaxMs. */
  restartBackoffMs: number;
  restartBackoffMaxMs: number;
  /** Uptime after which an exit no longer counts toward max_restarts (the budget resets). */
  restartResetMs: number;
  bootTimeoutMs?: number;
  stopTimeoutMs: number;
  /** Called when a service leaves this host for good (exited, failed, stopped, fenced). */
  onRelease: (name: string, epoch: number) => Promise<void>;
}

const TAIL_LINES = 20;

/**
 * Owns the VMs of this host: boots them, watches their exit, restarts them
 * with exponential backoff per their restart policy, and marks them failed
 * with their last exit code and log tail past `max_restarts`.
 */
export class Supervisor {
  readonly #services = new Map<string, Entry>();

  constructor(readonly options: SupervisorOptions) {}

  get(name: string): { epoch: number; configHash: string; pid?: number; running: boolean } | undefined {
    const e = this.#services.get(name);
    if (!e) return undefined;
    const r: { epoch: number; configHash: string; pid?: number; running: boolean } = {
      epoch: e.epoch,
      configHash: e.configHash,
      running: e.handle !== undefined && !e.stopping,
    };
    if (e.handle) r.pid = e.handle.pid;
    return r;
  }

  names(): string[] {
    return [...this.#services.keys()];
  }

  held(): Array<{ name: string; epoch: number; pid?: number }> {
    return [...this.#services.values()].map((e) => (e.handle ? { name: e.name, epoch: e.epoch, pid: e.handle.pid } : { name: e.name, epoch: e.epoch }));
  }

  /** Resources of one held service (0 when not held). */
  usageOf(name: string): { cpus: number; ramMib: number } {
    const e = this.#services.get(name);
    return e ? { cpus: e.resolved.cpus, ramMib: e.resolved.ram } : { cpus: 0, ramMib: 0 };
  }

  usage(): { cpus: number; ramMib: number } {
    let cpus = 0;
    let ramMib = 0;
    for (const e of this.#services.values()) {
      cpus += e.resolved.cpus;
      ramMib += e.resolved.ram;
    }
    return { cpus, ramMib };
  }

  #entry(name: string, input: BootInput): Entry {
    let e = this.#services.get(name);
    if (e) {
      Object.assign(e, input, { stopping: false });
      return e;
    }
    const { home, redis, retention } = this.options;
    const sink = new RedisLogSink(redis, name);
    const tail: string[] = [];
    const keep = (stream: 'stdout' | 'stderr') => (line: string) => {
      sink.push(stream, line);
      tail.push(stream === 'stderr' ? `[stderr] ${line}` : line);
      if (tail.length > TAIL_LINES) tail.shift();
    };
    e = {
      ...input,
      name,
      restarts: 0,
      stopping: false,
      upSince: 0,
      out: new RotatingLogWriter({ path: join(home.logDir, `${name}.stdout.log`), policy: retention, onLine: keep('stdout') }),
      err: new RotatingLogWriter({ path: join(home.logDir, `${name}.stderr.log`), policy: retention, onLine: keep('stderr') }),
      sink,
      tail,
    };
    this.#services.set(name, e);
    return e;
  }

  /** Boot (or re-boot) a service; resolves once the guest reports its command started. */
  async boot(name: string, input: BootInput): Promise<VmHandle> {
    const e = this.#entry(name, input);
    if (e.restartTimer) clearTimeout(e.restartTimer);
    e.restartTimer = undefined;
    e.restarts = 0;
    return this.#spawn(e);
  }

  async #spawn(e: Entry): Promise<VmHandle> {
    const spec = buildVmSpec({
      service: e.resolved,
      ...(e.image ? { image: e.image } : {}),
      stateDir: this.options.home.serviceDir(e.name),
      network: e.network,
      stdout: e.out,
      stderr: e.err,
      ...(this.options.bootTimeoutMs !== undefined ? { bootTimeoutMs: this.options.bootTimeoutMs } : {}),
    });
    const handle = await this.options.backend.start(spec);
    e.handle = handle;
    try {
      await handle.started;
    } catch (err) {
      const exit = await Promise.race([handle.wait(), new Promise<VmExit>((r) => setTimeout(() => r({ exitCode: null, reason: 'hypervisor-error' }), 5000))]);
      if (e.handle === handle) e.handle = undefined;
      await handle.kill().catch(() => undefined);
      throw new MonocoreError(
        'MC_ORCH_BOOT_FAILED',
        `service "${e.name}" did not start: ${(err as Error).message}${exit.detail ? ` (${exit.detail.slice(-500)})` : ''}`,
        { service: e.name, exitCode: exit.exitCode, reason: exit.reason },
        { cause: err },
      );
    }
    e.upSince = Date.now();
    void handle.wait().then((exit) => this.#onExit(e, handle, exit));
    return handle;
  }

  async #onExit(e: Entry, handle: VmHandle, exit: VmExit): Promise<void> {
    if (e.handle !== handle || e.stopping) return;
    e.handle = undefined;
    await this.#afterExit(e, exit);
  }

  async #afterExit(e: Entry, exit: VmExit): Promise<void> {
    if (e.stopping) return;
    await e.sink.flush();
    const { state, hostId, logger } = this.options;
    const fence = { host: hostId, epoch: e.epoch };
    const code = exit.exitCode;
    const policy = e.resolved.restart;
    const wants = policy === 'always' || (policy === 'on-failure' && code !== 0);
    // A service that ran steadily for a while before this exit starts a fresh restart budget.
    if (e.upSince > 0 && Date.now() - e.upSince >= this.options.restartResetMs) e.restarts = 0;
    try {
      if (!wants) {
        await state.transition(e.name, { status: 'exited', exitCode: code }, { ...fence, clear: ['pid'], detail: exit.reason });
        await this.#drop(e);
        return;
      }
      if (e.restarts >= e.resolved.maxRestarts) {
        const reason = `exited with code ${code ?? '?'} after ${e.restarts} restart${e.restarts === 1 ? '' : 's'}`;
        await state.transition(
          e.name,
          { status: 'failed', reason },
          {
            ...fence,
            clear: ['pid'],
            fields: { ...(code === null ? {} : { exit_code: code }), last_error: reason, log_tail: e.tail.join('\n') },
          },
        );
        await this.#drop(e);
        return;
      }
      e.restarts++;
      const delay = Math.min(this.options.restartBackoffMs * 2 ** (e.restarts - 1), this.options.restartBackoffMaxMs);
      await state.transition(
        e.name,
        { status: 'restarting' },
        { ...fence, clear: ['pid'], fields: { restarts: e.restarts, ...(code === null ? {} : { exit_code: code }) }, detail: `in ${delay} ms` },
      );
      e.restartTimer = setTimeout(() => void this.#restart(e), delay);
    } catch (err) {
      if (isMonocoreError(err, 'MC_STATE_FENCED') || isMonocoreError(err, 'MC_ORCH_UNKNOWN_SERVICE')) {
        logger.warn({ service: e.name, err: err.message }, 'service no longer ours; dropping it');
        await this.#drop(e);
        return;
      }
      logger.error({ service: e.name, err }, 'exit handling failed');
    }
  }

  async #restart(e: Entry): Promise<void> {
    e.restartTimer = undefined;
    if (e.stopping || this.#services.get(e.name) !== e) return;
    const { state, hostId, logger } = this.options;
    const fence = { host: hostId, epoch: e.epoch };
    try {
      await state.transition(e.name, { status: 'starting' }, fence);
      const handle = await this.#spawn(e);
      await state.transition(e.name, { status: 'running' }, {
        ...fence,
        fields: { pid: handle.pid, started_at: new Date().toISOString() },
      });
    } catch (err) {
      if (isMonocoreError(err, 'MC_STATE_FENCED') || isMonocoreError(err, 'MC_ORCH_UNKNOWN_SERVICE')) {
        await this.kill(e.name);
        return;
      }
      logger.warn({ service: e.name, err: (err as Error).message }, 'restart failed');
      // A failed boot counts as an exit without code: back off again or give up.
      await this.#afterExit(e, { exitCode: null, reason: 'hypervisor-error', detail: (err as Error).message });
    }
  }

  async #drop(e: Entry): Promise<void> {
    if (this.#services.get(e.name) === e) this.#services.delete(e.name);
    if (e.restartTimer) clearTimeout(e.restartTimer);
    await e.sink.close();
    e.out.end();
    e.err.end();
    await this.options.onRelease(e.name, e.epoch).catch(() => undefined);
  }

  /** Log tail (last lines of both streams) kept for failure reports. */
  tail(name: string): string {
    return this.#services.get(name)?.tail.join('\n') ?? '';
  }

  /** Intentional stop: no restart; the entry is dropped. Returns the exit, or null if nothing ran. */
  async stop(name: string, timeoutMs = this.options.stopTimeoutMs): Promise<VmExit | null> {
    const e = this.#services.get(name);
    if (!e) return null;
    e.stopping = true;
    if (e.restartTimer) clearTimeout(e.restartTimer);
    const h = e.handle;
    e.handle = undefined;
    const exit = h ? await h.stop({ timeoutMs }) : null;
    await this.#drop(e);
    return exit;
  }

  /** Immediate kill (fenced out: another host owns the service now). */
  async kill(name: string): Promise<void> {
    const e = this.#services.get(name);
    if (!e) return;
    e.stopping = true;
    const h = e.handle;
    e.handle = undefined;
    if (h) await h.kill().catch(() => undefined);
    await this.#drop(e);
  }

  async stopAll(timeoutMs = this.options.stopTimeoutMs): Promise<string[]> {
    const names = this.names();
    await Promise.all(names.map((n) => this.stop(n, timeoutMs).catch(() => null)));
    return names;
  }
}
