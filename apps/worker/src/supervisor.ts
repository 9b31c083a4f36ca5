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
  type MetricsRecorder,
  type MonocoreHome,
  type ResolvedService,
  type StateStore,
  type VmExit,
  type VmHandle,
  type VmNetwork,
  type VmSpec,
} from '@monocore/engine';
import { handleOf, transitionVm, type VmPhase } from './vm-phase.js';

/** A backend as the supervisor sees it: a hypervisor (QEMU, libkrun) or an injected backend object. */
export interface ServiceBackend {
  readonly name: string;
  available: HypervisorBackend['available'];
  start: HypervisorBackend['start'];
  /** Save a VM to its state dir and end it; continue it (qemu; docs/SNAPSHOTS.md). */
  pause?(handle: VmHandle): Promise<unknown>;
  resume?(spec: VmSpec): Promise<VmHandle>;
  fork?(parent: VmHandle, children: readonly VmSpec[]): Promise<VmHandle[]>;
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
  phase: VmPhase;
  restarts: number;
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
  /**
   * Whether this host may (still) run the service under `epoch` — its lease,
   * as HostLiveness sees it. Checked before every boot and restart.
   */
  mayRun: (name: string, epoch: number) => boolean;
  /** Called when a service leaves this host for good (exited, failed, stopped, killed) — not when fenced. */
  onRelease: (name: string, epoch: number) => Promise<void>;
  /** Where boot durations and restarts are recorded (GET /metrics). */
  metrics?: MetricsRecorder;
}

const TAIL_LINES = 20;

/** Why an entry ended, for a boot that finds its entry gone when the hypervisor answers. */
type EndReason = 'stopped' | 'killed' | 'fenced' | 'exited' | 'failed';

/**
 * Owns the VMs of this host: boots them, watches their exit, restarts them
 * with exponential backoff per their restart policy, and marks them failed
 * with their last exit code and log tail past `max_restarts`. Each service's
 * VM is in one explicit phase (vm-phase.ts).
 */
export class Supervisor {
  readonly #services = new Map<string, Entry>();
  readonly #ended = new WeakMap<Entry, EndReason>();

  constructor(readonly options: SupervisorOptions) {}

  get(name: string): { epoch: number; configHash: string; pid?: number; running: boolean } | undefined {
    const e = this.#services.get(name);
    if (!e) return undefined;
    const h = handleOf(e.phase);
    return { epoch: e.epoch, configHash: e.configHash, running: e.phase.kind === 'running', ...(h ? { pid: h.pid } : {}) };
  }

  names(): string[] {
    return [...this.#services.keys()];
  }

  /** The VM of a service running here (exec and files go to its agent), or undefined. */
  runningHandle(name: string): VmHandle | undefined {
    const e = this.#services.get(name);
    return e?.phase.kind === 'running' ? e.phase.handle : undefined;
  }

  /** Live hypervisor pids per service (for usage sampling). */
  pids(): Array<{ name: string; pid: number }> {
    const out: Array<{ name: string; pid: number }> = [];
    for (const e of this.#services.values()) {
      const h = handleOf(e.phase);
      if (h && h.pid > 0) out.push({ name: e.name, pid: h.pid });
    }
    return out;
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
      if (e.phase.kind === 'running') throw new Error(`service "${name}" is already running here: stop it before booting it again`);
      Object.assign(e, input);
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
      phase: { kind: 'booting' },
      restarts: 0,
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
    if (!this.options.mayRun(name, input.epoch)) throw leaseExpired(name);
    const e = this.#entry(name, input);
    e.restarts = 0;
    return this.#spawn(e);
  }

  async #spawn(e: Entry): Promise<VmHandle> {
    if (!this.options.mayRun(e.name, e.epoch)) throw leaseExpired(e.name);
    transitionVm(e.name, e, { kind: 'booting' });
    const booting = e.phase;
    const spec = buildVmSpec({
      service: e.resolved,
      ...(e.image ? { image: e.image } : {}),
      stateDir: this.options.home.serviceDir(e.name),
      network: e.network,
      stdout: e.out,
      stderr: e.err,
      ...(this.options.bootTimeoutMs !== undefined ? { bootTimeoutMs: this.options.bootTimeoutMs } : {}),
    });
    const booted = this.options.metrics?.startTimer('boot', { backend: this.options.backend.name });
    const handle = await this.options.backend.start(spec);
    if (e.phase !== booting) {
      // Stopped or fenced while the hypervisor was being set up: this VM must not live.
      await handle.kill().catch(() => undefined);
      throw this.#endedError(e);
    }
    transitionVm(e.name, e, { kind: 'booting', handle });
    const withHandle = e.phase;
    try {
      await handle.started;
    } catch (err) {
      const exit = await Promise.race([handle.wait(), new Promise<VmExit>((r) => setTimeout(() => r({ exitCode: null, reason: 'hypervisor-error' }), 5000))]);
      await handle.kill().catch(() => undefined);
      if (e.phase !== withHandle) throw this.#endedError(e);
      transitionVm(e.name, e, { kind: 'booting' });
      throw new MonocoreError(
        'MC_ORCH_BOOT_FAILED',
        `service "${e.name}" did not start: ${(err as Error).message}${exit.detail ? ` (${exit.detail.slice(-500)})` : ''}`,
        { service: e.name, exitCode: exit.exitCode, reason: exit.reason },
        { cause: err },
      );
    }
    if (e.phase !== withHandle) throw this.#endedError(e); // whoever ended it killed the handle
    void booted?.();
    if (handle.boot) this.options.logger.debug({ service: e.name, boot: handle.boot.from, why: handle.boot.reason }, 'service booted');
    transitionVm(e.name, e, { kind: 'running', handle, upSince: Date.now() });
    void handle.wait().then((exit) => this.#onExit(e, handle, exit));
    return handle;
  }

  #endedError(e: Entry): MonocoreError {
    const why = this.#ended.get(e) ?? 'stopped';
    if (why === 'fenced') return leaseExpired(e.name);
    return new MonocoreError('MC_ORCH_BOOT_FAILED', `service "${e.name}" was ${why} while it booted`, { service: e.name, reason: why });
  }

  async #onExit(e: Entry, handle: VmHandle, exit: VmExit): Promise<void> {
    if (e.phase.kind !== 'running' || e.phase.handle !== handle) return; // stopped, killed or fenced on purpose
    await this.#afterExit(e, exit);
  }

  /** An unexpected exit (or a failed restart): restart with backoff, or end as exited/failed. */
  async #afterExit(e: Entry, exit: VmExit): Promise<void> {
    const { state, hostId, logger } = this.options;
    const fence = { host: hostId, epoch: e.epoch };
    const code = exit.exitCode;
    const policy = e.resolved.restart;
    const wants = policy === 'always' || (policy === 'on-failure' && code !== 0);
    // A service that ran steadily for a while before this exit starts a fresh restart budget.
    if (e.phase.kind === 'running' && Date.now() - e.phase.upSince >= this.options.restartResetMs) e.restarts = 0;
    try {
      if (!wants) {
        this.#end(e, 'exited');
        await e.sink.flush();
        await state.transition(e.name, { status: 'exited', exitCode: code }, { ...fence, clear: ['pid'], detail: exit.reason });
        await this.#release(e);
        return;
      }
      if (e.restarts >= e.resolved.maxRestarts) {
        this.#end(e, 'failed');
        await e.sink.flush();
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
        await this.#release(e);
        return;
      }
      e.restarts++;
      void this.options.metrics?.increment('restarts');
      const delay = Math.min(this.options.restartBackoffMs * 2 ** (e.restarts - 1), this.options.restartBackoffMaxMs);
      transitionVm(e.name, e, { kind: 'backoff', timer: setTimeout(() => void this.#restart(e), delay) });
      await state.transition(
        e.name,
        { status: 'restarting' },
        { ...fence, clear: ['pid'], fields: { restarts: e.restarts, ...(code === null ? {} : { exit_code: code }) }, detail: `in ${delay} ms` },
      );
    } catch (err) {
      if (isMonocoreError(err, 'MC_STATE_FENCED') || isMonocoreError(err, 'MC_ORCH_UNKNOWN_SERVICE')) {
        logger.warn({ service: e.name, err: err.message }, 'service no longer ours; dropping it');
        await this.#finish(e, 'killed', (h) => h.kill());
        return;
      }
      logger.error({ service: e.name, err }, 'exit handling failed');
    }
  }

  async #restart(e: Entry): Promise<void> {
    if (e.phase.kind !== 'backoff') return;
    const { state, hostId, logger } = this.options;
    const fence = { host: hostId, epoch: e.epoch };
    try {
      if (!this.options.mayRun(e.name, e.epoch)) {
        // Normally the fence ended the entry already; never restart without a lease.
        this.#end(e, 'fenced');
        await this.#closeLogs(e);
        return;
      }
      await state.transition(e.name, { status: 'starting' }, fence);
      const handle = await this.#spawn(e);
      await state.transition(e.name, { status: 'running' }, {
        ...fence,
        fields: { pid: handle.pid, started_at: new Date().toISOString() },
      });
    } catch (err) {
      if (isMonocoreError(err, 'MC_ORCH_LEASE_EXPIRED')) return; // fenced: HostLiveness reclaims it when Redis answers
      if (isMonocoreError(err, 'MC_STATE_FENCED') || isMonocoreError(err, 'MC_ORCH_UNKNOWN_SERVICE')) {
        await this.#finish(e, 'killed', (h) => h.kill());
        return;
      }
      if (this.#ended.has(e)) return; // stopped or killed meanwhile
      logger.warn({ service: e.name, err: (err as Error).message }, 'restart failed');
      // A failed boot counts as an exit without code: back off again or give up.
      await this.#afterExit(e, { exitCode: null, reason: 'hypervisor-error', detail: (err as Error).message });
    }
  }

  /** The entry leaves the supervisor now (its phase becomes `ended`, so late callbacks see it). */
  #end(e: Entry, why: EndReason): VmHandle | undefined {
    const h = handleOf(e.phase);
    if (e.phase.kind !== 'ended') {
      this.#ended.set(e, why);
      transitionVm(e.name, e, { kind: 'ended' });
    }
    if (this.#services.get(e.name) === e) this.#services.delete(e.name);
    return h;
  }

  async #closeLogs(e: Entry): Promise<void> {
    await e.sink.close();
    e.out.end();
    e.err.end();
  }

  async #release(e: Entry): Promise<void> {
    await this.#closeLogs(e);
    await this.options.onRelease(e.name, e.epoch).catch(() => undefined);
  }

  /** End the entry, end its VM with `how`, close its logs and release its lease. */
  async #finish(e: Entry, why: EndReason, how: (h: VmHandle) => Promise<VmExit>): Promise<VmExit | null> {
    const h = this.#end(e, why);
    const exit = h ? await how(h).catch(() => null) : null;
    await this.#release(e);
    return exit;
  }

  /** Log tail (last lines of both streams) kept for failure reports. */
  tail(name: string): string {
    return this.#services.get(name)?.tail.join('\n') ?? '';
  }

  /** Intentional stop: no restart; the entry is dropped. Returns the exit, or null if nothing ran. */
  async stop(name: string, timeoutMs = this.options.stopTimeoutMs): Promise<VmExit | null> {
    const e = this.#services.get(name);
    if (!e) return null;
    return this.#finish(e, 'stopped', (h) => h.stop({ timeoutMs }));
  }

  /** Immediate kill (another host owns the service now, or its boot failed for good). */
  async kill(name: string): Promise<void> {
    const e = this.#services.get(name);
    if (!e) return;
    await this.#finish(e, 'killed', (h) => h.kill());
  }

  /**
   * Fencing (HostLiveness): SIGKILL the VM at once, without waiting for Redis,
   * and keep the lease — whether the service boots here again is decided when
   * Redis answers. Synchronous up to the kill signal.
   */
  fence(name: string, epoch: number): void {
    const e = this.#services.get(name);
    if (!e || e.epoch !== epoch) return;
    const h = this.#end(e, 'fenced');
    void (h ? h.kill().catch(() => undefined) : Promise.resolve()).then(() => this.#closeLogs(e)).catch(() => undefined);
  }

  async stopAll(timeoutMs = this.options.stopTimeoutMs): Promise<string[]> {
    const names = this.names();
    await Promise.all(names.map((n) => this.stop(n, timeoutMs).catch(() => null)));
    return names;
  }
}

function leaseExpired(name: string): MonocoreError {
  return new MonocoreError(
    'MC_ORCH_LEASE_EXPIRED',
    `service "${name}": this host could not renew its lease in time and stopped the VM (fenced); it boots again once Redis confirms the service is still here`,
    { service: name },
  );
}
