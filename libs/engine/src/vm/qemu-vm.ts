import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { AgentSession } from './agent/agent-session.js';
import { ChildProcessWatch, type ChildGone } from './child-process-watch.js';
import type { CleanupStack } from './cleanup-stack.js';
import type { GuestAgent, GuestIdentity } from './guest-agent.js';
import { parseGuestEvent } from './guest-protocol.js';
import type { VmHandle } from './hypervisor-backend.js';
import { removePidRecord } from './orphans.js';
import { QmpClient } from './snapshot/qmp-client.js';
import type { VmExit, VmSpec } from './vm-spec.js';

/** Where the boot time went, from host and guest timestamps (ms since spawn). */
export interface BootTimings {
  /** Guest init first reported ("boot"): hypervisor start + kernel boot. */
  initMs?: number;
  /** Guest uptime (s) at init start and at exec: kernel time vs init setup time. */
  guestInitUptime?: number;
  guestStartedUptime?: number;
  guestExitUptime?: number;
  startedMs?: number;
  exitMs?: number;
  /** Restored: QMP answered (QEMU is up), QEMU loaded the state, the state file's hash checked out. */
  restoreQmpMs?: number;
  restoreLoadedMs?: number;
  restoreHashedMs?: number;
  /** Restored from a template: the saved state loaded and checked, the guest running again. */
  restoredMs?: number;
  /** The agent answered and (template or restore) its identity was applied. */
  agentReadyMs?: number;
  /** A command VM from a template: the guest was up (sandbox mode, before its command was sent). */
  guestUpMs?: number;
}

/** Whether a VM was restored from a template or booted its kernel, and why (docs/SNAPSHOTS.md). */
export interface VmBootSource {
  from: 'template' | 'cold' | 'paused' | 'fork';
  reason: string;
}

export interface QemuVmHandle extends VmHandle {
  readonly timings: BootTimings;
  readonly consoleLog: string;
  readonly boot: VmBootSource;
}

/**
 * Where one QEMU VM is in its life — one field instead of loose flags, so every
 * guest report, the watchdog and each stop()/kill() decide by the phase they
 * find, and a report too late for its phase (a `started` after the watchdog
 * fired, an `exit` after our SIGKILL) is ignored rather than half-applied.
 *
 *   booting ──started──▶ running ──stop()──▶ stopping (stop() again re-sends SIGTERM)
 *   booting | running | stopping ──guest reports the exit──▶ exiting(code) ──QEMU gone──▶ exited
 *   booting | running | stopping ──watchdog, kill(), stop timeout──▶ killing(reason) ──QEMU gone──▶ exited
 *   booting | running | stopping ──QEMU gone by itself──▶ exited
 *
 * A command VM from a template stays `booting` until its command started: the guest being up
 * (sandbox mode: the first `started`, or the restore) only resolves `guestUp`, which sends the
 * command (sendMainCommand); the watchdog covers both.
 *
 * The exit is read from the phase QEMU died in: exiting → the command's code
 * (`stopped` when stop() asked for it); killing → killed or boot-timeout;
 * booting/running/stopping → QEMU or the guest init failed (hypervisor-error).
 */
export type QemuVmPhase =
  /** QEMU spawned; the guest has not reported that its command started. */
  | { kind: 'booting'; watchdog: NodeJS.Timeout }
  | { kind: 'running' }
  /** stop() sent SIGTERM to the guest command and waits for it to exit. */
  | { kind: 'stopping' }
  /** The guest reported the command's exit; init is powering off. */
  | { kind: 'exiting'; exitCode: number | null; started: boolean; stopped: boolean }
  /** We SIGKILLed QEMU. */
  | { kind: 'killing'; reason: 'killed' | 'boot-timeout'; started: boolean }
  /** QEMU is gone (terminal). */
  | { kind: 'exited' };

export type QemuVmPhaseKind = QemuVmPhase['kind'];

const NEXT: Record<QemuVmPhaseKind, readonly QemuVmPhaseKind[]> = {
  booting: ['running', 'exiting', 'killing', 'exited'],
  running: ['stopping', 'exiting', 'killing', 'exited'],
  stopping: ['stopping', 'exiting', 'killing', 'exited'], // stopping → stopping: stop() again re-sends SIGTERM
  exiting: ['exited'], // a kill() now only hurries QEMU; the command's exit code stands
  killing: ['exited'],
  exited: [],
};

/** `to`, if the table allows it from `from` (else throws naming both: such a transition is a bug); leaving booting disarms the watchdog. */
export function nextQemuVmPhase(id: string, from: QemuVmPhase, to: QemuVmPhase): QemuVmPhase {
  if (!NEXT[from.kind].includes(to.kind)) throw new Error(`vm "${id}": invalid QEMU VM phase transition ${from.kind} → ${to.kind}`);
  if (from.kind === 'booting') clearTimeout(from.watchdog);
  return to;
}

/** Whether the guest command had started (exec succeeded) in this phase. */
function commandStarted(p: QemuVmPhase): boolean {
  return p.kind === 'running' || p.kind === 'stopping' || ((p.kind === 'exiting' || p.kind === 'killing') && p.started);
}

export interface QemuVmInit {
  spec: VmSpec;
  child: ChildProcess;
  t0: number;
  consoleLog: string;
  console: Promise<Socket>;
  consoleLimitBytes: number;
  runtimeDir: string;
  /** The spec init reads at boot; absent for a VM restored from a template (its init read one long ago). */
  guestSpec?: Buffer;
  /** QEMU's QMP monitor connection (docs/SNAPSHOTS.md). */
  qmp: Promise<Socket>;
  /** A client already open on `qmp` (a spare's: its capabilities are negotiated once per connection). */
  qmpClient?: QmpClient;
  /**
   * This VM's identity, applied through the agent's REFRESH before agent() resolves: set when
   * the guest booted with a neutral one (a template is saved from it) or was restored.
   */
  identity?: GuestIdentity;
  /** Runs once the agent answered, before `identity` is applied: saving a template of the still neutral guest. */
  beforeIdentity?: (vm: QemuVm, agent: GuestAgent) => Promise<void>;
  /**
   * A command VM booted neutral (a template is saved from it) or restored from a template: the
   * guest comes up in sandbox mode; once `identity` is applied this `main` message
   * (guest-protocol.ts encodeMainCommand) makes init run the command, and only its `started`
   * counts as the VM's start.
   */
  mainCommand?: Buffer;
  boot: VmBootSource;
  /** sha256 of its normalised QEMU argv (qemu-args.ts machineShape): what a saved state of it restores into. */
  machine: string;
  /** QEMU's uid (root only): sockets QEMU connects to are given to it. */
  uid?: number;
  ctl: Promise<Socket>;
  out: Promise<Socket>;
  err: Promise<Socket>;
  /** The guest agent's port (docs/AGENT.md). */
  agent: Promise<Socket>;
  /** The host's handle on the agent's bulk lane (opened before QEMU ran; closed by `cleanup`), when the VM has one. */
  agentLane?: FileHandle;
  bootTimeoutMs: number;
  /** Everything the start allocated; run once QEMU is gone and the ports are drained. */
  cleanup: CleanupStack;
  home: MonocoreHome;
}

/** One running QEMU process and the guest in it, seen through its console and ports. */
export class QemuVm implements QemuVmHandle {
  readonly id: string;
  readonly pid: number;
  readonly started: Promise<void>;
  readonly timings: BootTimings = {};
  readonly consoleLog: string;
  readonly spawned: Promise<void>;
  readonly boot: VmBootSource;

  private phase: QemuVmPhase;
  private readonly watch: ChildProcessWatch;
  private ctlSock?: Socket;
  private guestError?: string;
  private qemuStderr = '';
  private consoleTail = Buffer.alloc(0);
  private consoleDropped = 0;
  private agentSession?: Promise<GuestAgent>;
  private agentEnded?: MonocoreError;
  private qmpClient?: Promise<QmpClient>;
  /** With a `mainCommand`: the guest came up without it (sandbox mode); settles once. */
  private guestIsUp?: () => void;
  private readonly guestUp: Promise<void>;
  /** Why a start from a template failed before the command ran (the agent never answered, …). */
  private startError?: string;

  constructor(private readonly s: QemuVmInit) {
    this.id = s.spec.id;
    this.pid = s.child.pid ?? -1;
    this.consoleLog = s.consoleLog;
    this.boot = { ...s.boot };
    if (s.qmpClient) this.qmpClient = Promise.resolve(s.qmpClient);
    const child = s.child;
    const watchdog = setTimeout(() => {
      if (this.phase.kind !== 'booting') return;
      this.enter({ kind: 'killing', reason: 'boot-timeout', started: false });
      child.kill('SIGKILL');
    }, s.bootTimeoutMs);
    this.phase = { kind: 'booting', watchdog };
    child.stderr?.on('data', (d: Buffer) => {
      if (this.qemuStderr.length < 8192) this.qemuStderr += d.toString('utf8');
    });
    child.stdout?.resume();
    const watch = new ChildProcessWatch(child, {
      goneOn: 'exit',
      onSpawnError: (e) => {
        this.qemuStderr += `spawn error: ${e.message}\n`;
      },
      home: s.home,
      record: { id: s.spec.id, runtimeDir: s.runtimeDir, backend: 'qemu' },
    });
    this.watch = watch;
    this.started = watch.started;
    this.spawned = watch.spawned;
    const childGone = watch.gone;
    // A command VM from a template is up before its command starts; if it ends first, `started` rejects for both.
    this.guestUp = s.mainCommand ? Promise.race([new Promise<void>((resolve) => (this.guestIsUp = resolve)), this.started]) : this.started;
    this.guestUp.catch(() => undefined);
    if (s.mainCommand) void this.sendMainCommand(s.mainCommand);

    // Each guest port settles once its socket closes, or at once when QEMU died without
    // ever connecting it (e.g. a start-up failure): nothing to drain then, and no timer keeps
    // a finished CLI alive.
    const drained = (conn: Promise<Socket>, attach: (sock: Socket) => void): Promise<void> =>
      new Promise<void>((resolve) => {
        let connected = false;
        void childGone.then(() => setImmediate(() => !connected && resolve()));
        void conn.then((sock) => {
          connected = true;
          sock.on('error', () => {});
          attach(sock);
          sock.once('close', () => resolve());
        });
      });
    // Output: each port straight into its stream, never ended by us (the caller owns it).
    const pump = (conn: Promise<Socket>, dest: NodeJS.WritableStream | undefined): Promise<void> =>
      drained(conn, (sock) => {
        if (dest) sock.pipe(dest as NodeJS.WritableStream, { end: false });
        else sock.resume();
      });
    const outDone = pump(s.out, s.spec.stdout);
    const errDone = pump(s.err, s.spec.stderr);
    const conDone = drained(s.console, (sock) => {
      const fd = openSync(s.consoleLog, 'a');
      let written = 0;
      sock.on('data', (d: Buffer) => {
        this.consoleTail = Buffer.concat([this.consoleTail, d]).subarray(-65536);
        if (written < s.consoleLimitBytes) {
          const part = d.subarray(0, s.consoleLimitBytes - written);
          writeSync(fd, part);
          written += part.length;
          if (written >= s.consoleLimitBytes) writeSync(fd, `\n[monocore: console.log capped at ${s.consoleLimitBytes} bytes]\n`);
        } else {
          this.consoleDropped += d.length;
        }
      });
      sock.once('close', () => closeSync(fd));
    });

    void s.ctl.then((sock) => {
      this.ctlSock = sock;
      sock.on('error', () => {});
      if (s.guestSpec) sock.write(s.guestSpec);
      let buf = '';
      sock.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          this.onControl(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
    });

    void this.end(childGone, [outDone, errDone, conDone]);
  }

  /** QEMU is gone: drain the ports, undo what the start allocated, then settle `started` and `wait()`. */
  private async end(childGone: Promise<ChildGone>, drains: Array<Promise<void>>): Promise<void> {
    const { code, signal } = await childGone;
    const last = this.phase;
    this.enter({ kind: 'exited' });
    await Promise.all(drains);
    this.ctlSock?.destroy();
    void this.s.agent.then((sock) => sock.destroy());
    void this.s.qmp.then((sock) => sock.destroy());
    await this.s.cleanup.runAll();
    if (this.watch.pidFile) removePidRecord(this.watch.pidFile);
    const exit = this.describeExit(last, code, signal);
    if (!commandStarted(last)) {
      this.watch.rejectStarted(
        new MonocoreError(
          exit.reason === 'boot-timeout' ? 'MC_VM_BOOT_TIMEOUT' : 'MC_VM_START_FAILED',
          `${this.id}: the command did not start (${exit.reason}${exit.exitCode !== null ? `, exit code ${exit.exitCode}` : ''})${exit.detail ? `: ${exit.detail}` : ''}`,
          { id: this.id, exit },
        ),
      );
    }
    this.watch.resolveExit(exit);
  }

  private enter(to: QemuVmPhase): void {
    this.phase = nextQemuVmPhase(this.id, this.phase, to);
  }

  private onControl(line: string): void {
    const ev = parseGuestEvent(line);
    if (!ev) return;
    const now = Date.now() - this.s.t0;
    const p = this.phase;
    switch (ev.type) {
      case 'boot':
        this.timings.initMs = now;
        this.timings.guestInitUptime = ev.uptime;
        break;
      case 'started':
        if (p.kind !== 'booting') return; // too late: the watchdog or a kill() came first
        if (this.onGuestUp()) return; // the guest is up; its command is not sent yet
        this.timings.startedMs = now;
        this.timings.guestStartedUptime = ev.uptime;
        this.enter({ kind: 'running' });
        this.watch.resolveStarted();
        break;
      case 'error':
        this.guestError = ev.message;
        break;
      case 'exit':
        if (p.kind !== 'booting' && p.kind !== 'running' && p.kind !== 'stopping') return; // already killed or exiting
        this.timings.exitMs = now;
        this.timings.guestExitUptime = ev.uptime;
        this.enter({ kind: 'exiting', exitCode: ev.code, started: commandStarted(p), stopped: p.kind === 'stopping' });
        // init powers off right after; make sure a wedged QEMU cannot linger.
        setTimeout(() => {
          if (this.phase.kind !== 'exited') this.s.child.kill('SIGKILL');
        }, 5000).unref();
        break;
    }
  }

  /** The exit, read from the phase QEMU died in. */
  private describeExit(last: QemuVmPhase, code: number | null, signal: NodeJS.Signals | null): VmExit {
    const tail = (): string => this.consoleTail.subarray(-3000).toString('utf8').trim();
    if (last.kind === 'exiting') {
      return { exitCode: last.exitCode, reason: last.stopped ? 'stopped' : 'exited' };
    }
    if (last.kind === 'killing' && last.reason === 'boot-timeout') {
      return {
        exitCode: null,
        reason: 'boot-timeout',
        detail: `no start report within ${this.s.bootTimeoutMs} ms; console tail:\n${tail()}`,
      };
    }
    if (last.kind === 'killing') {
      return { exitCode: last.started ? 137 : null, reason: 'killed' };
    }
    const why = this.startError
      ? this.startError
      : this.guestError
      ? `guest init: ${this.guestError}`
      : `hypervisor exited (${signal ? `signal ${signal}` : `code ${code}`})${this.qemuStderr.trim() ? `: ${this.qemuStderr.trim()}` : ''}`;
    return { exitCode: null, reason: 'hypervisor-error', detail: `${why}\nconsole tail:\n${tail()}` };
  }

  /**
   * A VM restored from a template: its saved state is loaded and checked and the guest runs
   * again (QMP `cont` done). Counts as the command having started (`started` resolves).
   */
  markRestored(): void {
    if (this.phase.kind !== 'booting') return;
    this.timings.restoredMs = Date.now() - this.s.t0;
    if (this.onGuestUp()) return;
    this.enter({ kind: 'running' });
    this.watch.resolveStarted();
  }

  /** A command VM's guest came up in sandbox mode (first `started`, or restored): true if that is what this was. */
  private onGuestUp(): boolean {
    const up = this.guestIsUp;
    if (!up) return false;
    this.guestIsUp = undefined;
    this.timings.guestUpMs = Date.now() - this.s.t0;
    up();
    return true;
  }

  /**
   * Once the guest is up: agent handshake, (template capture,) REFRESH with this VM's identity,
   * then the command. Until init reports the command `started` the VM is booting (the boot
   * watchdog covers all of it); a failure here kills QEMU and is the start's failure.
   */
  private async sendMainCommand(main: Buffer): Promise<void> {
    const gone = this.watch.gone.then(() => false as const);
    try {
      if ((await Promise.race([this.guestUp.then(() => true), gone])) === false) return;
      await this.agent();
      const ctl = await this.s.ctl;
      if (this.phase.kind !== 'booting') return; // killed meanwhile
      ctl.write(main);
    } catch (err) {
      if (this.phase.kind !== 'booting') return;
      this.startError = `starting the command in the guest restored from a template failed: ${(err as Error).message}`;
      this.s.child.kill('SIGKILL');
    }
  }

  /** The VM's QMP monitor (opened on first use; closed when QEMU exits). */
  qmp(): Promise<QmpClient> {
    this.qmpClient ??= (async () => {
      const gone = this.watch.gone.then(() => undefined);
      const sock = await Promise.race([this.s.qmp, gone]);
      if (!sock) throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `vm ${JSON.stringify(this.id)} ended before its QMP monitor connected`, { id: this.id });
      return QmpClient.open(sock, this.id);
    })();
    return this.qmpClient;
  }

  /** When QEMU was spawned (ms since the epoch): what `timings` count from. */
  get t0(): number {
    return this.s.t0;
  }

  get runtimeDir(): string {
    return this.s.runtimeDir;
  }

  get spec(): VmSpec {
    return this.s.spec;
  }

  get machine(): string {
    return this.s.machine;
  }

  get uid(): number | undefined {
    return this.s.uid;
  }

  wait(): Promise<VmExit> {
    return this.watch.exit;
  }

  agent(): Promise<GuestAgent> {
    if (this.agentEnded) return Promise.reject(this.agentEnded);
    this.agentSession ??= this.openAgent();
    return this.agentSession;
  }

  /** Once the guest has started (the agent is forked just before): handshake on the agent port. */
  private async openAgent(): Promise<GuestAgent> {
    const gone = this.watch.gone.then(() => undefined);
    const ended = (): MonocoreError => new MonocoreError('MC_AGENT_DISCONNECTED', `vm ${JSON.stringify(this.id)} ended before its guest agent answered`, { id: this.id });
    try {
      await this.guestUp; // rejects with the VM's start failure (a command VM from a template: up before its command)
      const sock = await Promise.race([this.s.agent, gone]);
      if (!sock) throw ended();
      const session = await AgentSession.open(sock, { label: this.id, handshakeTimeoutMs: 30_000, ...(this.s.agentLane ? { lane: this.s.agentLane } : {}) });
      void session.closed.then((err) => (this.agentEnded = err));
      await this.s.beforeIdentity?.(this, session);
      if (this.s.identity) await session.refresh(this.s.identity);
      this.timings.agentReadyMs = Date.now() - this.s.t0;
      return session;
    } catch (err) {
      this.agentEnded = err instanceof MonocoreError ? err : ended();
      throw this.agentEnded;
    }
  }

  async stop(options: { timeoutMs?: number } = {}): Promise<VmExit> {
    const p = this.phase.kind;
    // Before the command started there is nothing to signal; once it is exiting or
    // being killed, the end is already on its way.
    if (p === 'booting') return this.kill();
    if (p !== 'running' && p !== 'stopping') return this.watch.exit;
    this.enter({ kind: 'stopping' });
    this.ctlSock?.write('signal 15\n'); // running implies the control port is connected: `started` came over it
    const timer = setTimeout(() => void this.kill(), options.timeoutMs ?? 10_000);
    const exit = await this.watch.exit;
    clearTimeout(timer);
    return exit;
  }

  kill(): Promise<VmExit> {
    const p = this.phase;
    if (p.kind === 'booting' || p.kind === 'running' || p.kind === 'stopping') {
      this.enter({ kind: 'killing', reason: 'killed', started: commandStarted(p) });
    }
    if (this.phase.kind !== 'exited') this.s.child.kill('SIGKILL');
    return this.watch.exit;
  }
}
