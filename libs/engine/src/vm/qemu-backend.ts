import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import { MonocoreHome } from '../home/index.js';
import { detectAccel, hostTscKhz, type Accel, type AccelChoice } from './acceleration.js';
import { ChildProcessWatch } from './child-process-watch.js';
import { CleanupStack } from './cleanup-stack.js';
import { DiskBudget, diskReserveFromEnv } from './disk-budget.js';
import { findGuestKernel, type GuestKernel } from './guest-kernel.js';
import { encodeGuestSpec, encodeMainCommand, RLIMIT_NUMBERS, type GuestSpec } from './guest-protocol.js';
import { GroupSwitches } from './group-switches.js';
import type { GuestAgent } from './guest-agent.js';
import type { BackendAvailability, HypervisorBackend } from './hypervisor-backend.js';
import { buildInitramfs, type Initramfs } from './initramfs-builder.js';
import { findExecutable } from './find-executable.js';
import { launchArgv, machineShape, memMergeFromEnv, qemuArgs, qemuCaps, type QemuFile, type QemuMachine } from './qemu-args.js';
import {
  accelGroups, attachAgentLane, attachBootFiles, attachImageBlock, attachNics, attachSerialPorts, attachVmUid, attachVolumes, attachWritableDisk,
  checkForwardedPorts, VM_UID_BASE, writableDiskPath, type InheritFd, type SerialPorts,
} from './qemu-devices.js';
import { removePidRecord } from './orphans.js';
import { qemuVersion, runQemuVersion } from './qemu-version.js';
import { QemuVm, type QemuVmHandle, type QemuVmInit, type VmBootSource } from './qemu-vm.js';
import { QmpClient } from './snapshot/qmp-client.js';
import { DEFAULT_SPARE_IDLE_MS, SparePool, spareKey, type Spare } from './snapshot/spare-vms.js';
import type { Template } from './snapshot/template-store.js';
import { TemplateStore } from './snapshot/template-store.js';
import { restoreStubFiles } from './snapshot/restore-stub.js';
import { pausedStatePath, readPausedMeta, removePaused, writePausedMeta, type PausedVmMeta } from './snapshot/paused-vm.js';
import type { VmStateDigest } from './snapshot/vm-state-file.js';
import { captureTemplate, finishRestore, loadRestoredState, neutralGuestSpec, templateIdentity, templateIneligibility } from './snapshot/vm-templates.js';
import { saveStopped } from './snapshot/save-stopped.js';
import { warmTemplatePageCache, warmUpPrograms } from './snapshot/template-warm-up.js';
import { planStart, type StartMode, type StartPlan, type StartPlanHost } from './snapshot/start-plan.js';
import { validateVmSpec } from './vm-spec-validation.js';
import type { VmSpec } from './vm-spec.js';

export { findExecutable };
export type { BootTimings, QemuVmHandle } from './qemu-vm.js';

export interface QemuBackendOptions {
  home?: MonocoreHome;
  /** Guest kernel directory (else MONOCORE_KERNEL_DIR, else /var/lib/monocore/kernel). */
  kernelDir?: string;
  qemuBinary?: string;
  /** Force an accelerator (default: detectAccel()). A forced choice is not boot-probed. */
  accel?: Accel;
  /** Replaces detectAccel() (hosts with their own policy; tests). Its KVM/HVF pick is boot-probed like an auto-detected one. */
  detectAccel?: () => AccelChoice;
  /** How long the boot probe of an auto-detected KVM/HVF may take before falling back to TCG (default 20 s). */
  accelProbeTimeoutMs?: number;
  /**
   * Command prefix for the hypervisor process, e.g. ['ip', 'netns', 'exec', 'ns1']
   * to run it inside a network namespace. Must exec (not fork) its argument.
   */
  launchPrefix?: string[];
  /** Size of the sparse per-service ext4 disk when the spec sets none (default 4096 MiB; blocks are allocated on write). */
  diskSizeMib?: number;
  /** Free disk the host keeps whatever the VMs write (default MONOCORE_DISK_RESERVE_MIB, else 1024 MiB): disk-budget.ts. */
  diskReserveMib?: number;
  /** Default boot watchdog when the spec sets none (default 60 s). */
  bootTimeoutMs?: number;
  /** Cap of <stateDir>/console.log per boot (default 1 MiB); later output is counted, not stored. */
  consoleLimitBytes?: number;
  /** First uid of the per-VM uid range used when running as root (default 0x70000000; 65,536 uids). */
  vmUidBase?: number;
  /** Under TCG: each VM's translated-code buffer, MiB (default MONOCORE_TCG_CODE_MIB, else DEFAULT_TCG_CODE_MIB). */
  tcgCodeMib?: number;
  /**
   * Let KSM merge guest RAM between VMs (QEMU's mem-merge=on). Default: on only when
   * MONOCORE_MEM_MERGE=1; merged pages are a side channel between guests (docs/THREATS.md "Memory sharing").
   */
  memMerge?: boolean;
  /** Start eligible VMs from templates (docs/SNAPSHOTS.md); default true unless MONOCORE_TEMPLATES=0. */
  templates?: boolean;
  /**
   * How many sandbox shapes keep a restore made ahead of the request (docs/SNAPSHOTS.md
   * "Spares"; default 0: off). Worker hosts set it from MONOCORE_SPARES (default DEFAULT_SPARES).
   */
  spares?: number;
  /** A spare nobody took in this long is discarded (default 10 min). */
  spareIdleMs?: number;
  /**
   * Guest RAM (MiB) the host can still give VMs, spares not counted: a spare's guest RAM is
   * resident while it waits, so it is made only where it fits, and spares are discarded when a
   * start needs their room (the worker passes its capacity less its running VMs). Absent: no limit.
   */
  spareRoomMib?: () => number;
  /** Where the reasons go when a VM boots cold instead of from a template (pino-like; debug level). */
  logger?: { debug(obj: object, msg: string): void };
}

const DEFAULT_DISK_MIB = 4096;
/** How long after a start of its shape the next spare is made: its load must not compete with that start's first exec. */
const SPARE_AFTER_MS = 200;
/** Measured in docs/PLATFORM.md "Host memory per VM under TCG". */
export const DEFAULT_TCG_CODE_MIB = 64;

function tcgCodeMibFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.MONOCORE_TCG_CODE_MIB;
  if (v === undefined || v === '') return DEFAULT_TCG_CODE_MIB;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 4096) {
    throw new MonocoreError('MC_USAGE', `MONOCORE_TCG_CODE_MIB must be a whole number of MiB in 1..4096, got ${JSON.stringify(v)}`, { value: v });
  }
  return n;
}

/**
 * The QEMU `-M microvm` backend (x86_64). One qemu-system-x86_64 process per VM,
 * started through `setpriv --pdeathsig KILL` so it dies with its supervisor.
 * Boot recipe and its reasons: docs/VM.md and PLATFORM.md.
 */
export class QemuBackend implements HypervisorBackend {
  readonly name = 'qemu' as const;
  private readonly home: MonocoreHome;
  private readonly qemu: string;
  private initramfsPromise?: Promise<{ kernel: GuestKernel; initramfs: Initramfs }>;
  private filesPromise?: Promise<{ kernel: GuestKernel; initramfs: Initramfs }>;
  private accelChoice?: AccelChoice;
  private readonly switches = new GroupSwitches();
  private readonly disks: DiskBudget;
  /** The host's VM templates (docs/SNAPSHOTS.md). */
  readonly templates: TemplateStore;
  private qemuVersion?: string;
  private readonly spares: SparePool<SpareQemu>;

  constructor(private readonly opts: QemuBackendOptions = {}) {
    this.home = opts.home ?? new MonocoreHome();
    this.qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.disks = new DiskBudget(opts.diskReserveMib ?? diskReserveFromEnv());
    this.templates = new TemplateStore(this.home);
    this.spares = new SparePool<SpareQemu>({
      max: opts.templates === false ? 0 : (opts.spares ?? 0),
      idleMs: opts.spareIdleMs ?? DEFAULT_SPARE_IDLE_MS,
      ...(opts.spareRoomMib ? { roomMib: opts.spareRoomMib } : {}),
      onError: (err, key) => opts.logger?.debug({ spareKey: key, reason: (err as Error).message }, 'spare not made'),
    });
  }

  private get templatesEnabled(): boolean {
    return this.opts.templates ?? process.env.MONOCORE_TEMPLATES !== '0';
  }

  get accel(): AccelChoice {
    if (!this.accelChoice) {
      this.accelChoice = this.opts.accel ? { accel: this.opts.accel, reason: 'forced by QemuBackend options' } : (this.opts.detectAccel ?? detectAccel)();
    }
    return this.accelChoice;
  }

  async available(): Promise<BackendAvailability> {
    if (process.platform !== 'linux') return { available: false, reason: `the qemu backend supports Linux hosts only (this is ${process.platform})` };
    // PATH lookups, not spawns: available() sits on `monocore run`'s start-up path.
    if (!findExecutable(this.qemu)) return { available: false, reason: `${this.qemu} not found in PATH (apt-get install qemu-system-x86)` };
    if (!findExecutable('setpriv')) return { available: false, reason: 'setpriv (util-linux) not found: needed to tie QEMU to its supervisor' };
    if (!findExecutable('mkfs.ext4')) return { available: false, reason: 'mkfs.ext4 not found (apt-get install e2fsprogs)' };
    if (!findExecutable('mkfs.erofs')) return { available: false, reason: "mkfs.erofs not found (apt-get install erofs-utils): it builds each image's read-only root device" };
    try {
      const { initramfs, kernel } = await this.prepare();
      return { available: true, accel: this.accel.accel, detail: `${this.accel.reason}; kernel ${kernel.version}; initramfs ${initramfs.path}` };
    } catch (err) {
      return { available: false, reason: err instanceof Error ? err.message : String(err) };
    }
  }

  /**
   * `qemu-system-x86_64 --version`'s first line, or the reason it cannot run: run now (doctor
   * asks whether QEMU runs, which a cached answer cannot tell: its libraries may have changed).
   */
  version(): string {
    const v = runQemuVersion(this.qemu);
    return v.ok ? v.line : v.reason;
  }

  /** Finds the kernel and builds (or reuses) the initramfs; cached per backend. */
  prepare(): Promise<{ kernel: GuestKernel; initramfs: Initramfs }> {
    if (!this.initramfsPromise) {
      this.initramfsPromise = (async () => {
        const { kernel, initramfs } = await this.prepareFiles();
        await this.verifyHardwareAccel();
        return { kernel, initramfs };
      })();
      this.initramfsPromise.catch(() => {
        this.initramfsPromise = undefined; // let a later call retry (e.g. after guest-kernel.sh ran)
      });
    }
    return this.initramfsPromise;
  }

  private prepareFiles(): Promise<{ kernel: GuestKernel; initramfs: Initramfs }> {
    this.filesPromise ??= (async () => {
      const kernel = findGuestKernel(this.opts.kernelDir);
      const initramfs = await buildInitramfs({ kernel, cacheDir: this.home.kernelDir });
      return { kernel, initramfs };
    })();
    this.filesPromise.catch(() => {
      this.filesPromise = undefined;
    });
    return this.filesPromise;
  }

  /**
   * A hardware accelerator that was auto-detected (not forced) must prove
   * itself once with a boot probe; if the probe fails (a KVM that crawls, like
   * kvm_pvm, or a broken HVF), fall back to TCG and say why.
   */
  private async verifyHardwareAccel(): Promise<void> {
    const choice = this.accel;
    if (choice.accel === 'tcg' || this.opts.accel || process.env.MONOCORE_QEMU_ACCEL) return;
    const p = await this.probe(this.opts.accelProbeTimeoutMs ?? 20_000, true);
    if (!p.ok) {
      this.accelChoice = { accel: 'tcg', reason: `${choice.accel} boot probe failed (${p.detail.split('\n')[0]}); using TCG` };
    }
  }

  /**
   * Boots only the kernel + initramfs and has init answer over the control
   * channel, then power off: proves the accelerator and boot path work.
   */
  async probe(timeoutMs = 30_000, skipPrepare = false): Promise<{ ok: boolean; ms: number; detail: string }> {
    const t0 = Date.now();
    const stateDir = await mkdtemp(join(tmpdir(), 'mc-probe-'));
    try {
      const h = await this.startInternal(
        { id: 'probe', rootfs: stateDir, command: '', args: [], env: [], cpus: 1, ramMib: 128, volumes: [], ports: [], stateDir, network: { mode: 'none' }, bootTimeoutMs: timeoutMs },
        true,
        skipPrepare,
      );
      const exit = await h.wait();
      const ok = exit.exitCode === 0;
      return { ok, ms: Date.now() - t0, detail: ok ? `booted in ${Date.now() - t0} ms` : `${exit.reason}: ${exit.detail ?? ''}` };
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  }

  /**
   * Starts a VM: restored from its template when one applies, else booted cold (saving the
   * template on the way when this VM may build it). A restore that fails for any reason
   * (a state file that does not check out, QEMU refusing it) deletes the template and boots
   * cold instead; the reason is in `handle.boot` and the debug log.
   */
  async start(spec: VmSpec): Promise<QemuVmHandle> {
    if (!this.templatesEnabled) return this.startInternal(spec, false, false, { kind: 'cold', reason: 'templates are off (MONOCORE_TEMPLATES=0)' });
    try {
      return await this.startInternal(spec, false, false, { kind: 'auto' });
    } catch (err) {
      if (!(err instanceof RestoreFailed) || !err.template) throw err;
      await this.templates.remove(err.template).catch(() => undefined);
      // The restore copied the template's disk into the VM's state dir: the cold boot starts fresh.
      await rm(writableDiskPath(spec.stateDir), { force: true });
      const reason = `restoring template ${err.template.key} failed, template deleted: ${err.cause instanceof Error ? err.cause.message : String(err.cause)}`;
      this.opts.logger?.debug({ vm: spec.id, reason }, 'booting cold');
      return this.startInternal(spec, false, false, { kind: 'auto', afterFailedRestore: reason });
    }
  }

  /**
   * Pause (docs/SNAPSHOTS.md "Pause and resume"): saves the running VM's state next to its
   * writable disk in its state dir, then ends its QEMU; the VM then uses no host memory.
   * `resume()` continues it. The handle ends like a killed VM.
   */
  async pause(handle: QemuVmHandle): Promise<PausedVmMeta> {
    if (!(handle instanceof QemuVm)) throw new MonocoreError('MC_USAGE', 'pause() takes a VM started by this backend', {});
    const vm = handle;
    let saved = false;
    try {
      const { state, stoppedMs } = await saveStopped(vm, { dest: pausedStatePath(vm.spec.stateDir), resume: 'on-failure' });
      saved = true;
      const meta: PausedVmMeta = { format: 1, machine: vm.machine, qemu: this.qemuVersionLine(), state, pausedAt: new Date().toISOString(), saveMs: stoppedMs };
      await writePausedMeta(vm.spec.stateDir, meta);
      await vm.kill();
      return meta;
    } catch (err) {
      await removePaused(vm.spec.stateDir);
      // Not paused: it runs on as before (saveStopped let it run again if the save itself failed).
      if (saved) await (await vm.qmp()).execute('cont').catch(() => undefined);
      throw err;
    }
  }

  /**
   * Resume a VM paused by pause(): the same spec (its state dir holds the paused state and
   * the disk), restored into a QEMU of the same machine shape, given its identity again with a
   * fresh clock and random pool. The paused files are removed once it runs. Throws
   * MC_VM_SNAPSHOT_FAILED when it cannot be resumed (no paused state, another machine shape or
   * QEMU, a state file that does not check out); the paused files are then kept.
   */
  async resume(spec: VmSpec): Promise<QemuVmHandle> {
    const meta = await readPausedMeta(spec.stateDir);
    if (meta.qemu !== this.qemuVersionLine()) {
      throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${spec.id}: paused by ${meta.qemu}, this host runs ${this.qemuVersionLine()}`, { id: spec.id });
    }
    let handle: QemuVmHandle;
    try {
      handle = await this.startInternal(spec, false, false, { kind: 'resume', meta });
    } catch (err) {
      if (err instanceof RestoreFailed) {
        const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
        throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${spec.id}: resume failed: ${cause}`, { id: spec.id }, { cause: err.cause });
      }
      throw err;
    }
    await removePaused(spec.stateDir);
    return handle;
  }

  /**
   * Fork (docs/SNAPSHOTS.md "Fork"): the running parent is paused only while its state is
   * saved and its writable disk copied for each child (copy-on-write where the filesystem can,
   * else a sparse copy), then runs on; each child is restored from that state with its own disk
   * copy and gets its own identity and random pool. Children must have the parent's machine
   * shape (same image, RAM, vCPUs, disk, NIC kinds). All children start or none is left.
   */
  async fork(parent: QemuVmHandle, children: readonly VmSpec[]): Promise<QemuVmHandle[]> {
    if (!(parent instanceof QemuVm)) throw new MonocoreError('MC_USAGE', 'fork() takes a VM started by this backend', {});
    const vm = parent;
    const statePath = join(vm.spec.stateDir, `fork-${process.pid}-${Date.now()}.state`);
    let state: VmStateDigest;
    let pausedMs: number;
    try {
      ({ state, stoppedMs: pausedMs } = await saveStopped(vm, { dest: statePath, diskCopies: children.map((c) => writableDiskPath(c.stateDir)), resume: 'always' }));
    } catch (err) {
      await rm(statePath, { force: true });
      throw err;
    }
    try {
      const started = await Promise.allSettled(children.map((c) => this.startInternal(c, false, false, { kind: 'fork', parent: vm.id, machine: vm.machine, statePath, state, pausedMs })));
      const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      const handles = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      if (failed) {
        await Promise.all(handles.map((h) => h.kill()));
        const cause = failed.reason instanceof RestoreFailed ? failed.reason.cause : failed.reason;
        throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `fork of ${vm.id} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { id: vm.id }, { cause });
      }
      return handles;
    } finally {
      await rm(statePath, { force: true });
    }
  }

  /** The version line templates and paused VMs are keyed on: remembered in the run dir per binary (qemu-version.ts). */
  private qemuVersionLine(): string {
    this.qemuVersion ??= qemuVersion(this.qemu, this.home.runDir);
    return this.qemuVersion;
  }

  /** The writable disk, admitted by the host's disk budget first (released once QEMU is gone). */
  private async attachBudgetedDisk(spec: VmSpec, inherit: InheritFd, cleanup: CleanupStack, seed?: string): Promise<QemuFile> {
    const sizeMib = this.diskMib(spec);
    cleanup.push(this.disks.admit(spec.id, writableDiskPath(spec.stateDir), sizeMib));
    return attachWritableDisk(spec.stateDir, sizeMib, inherit, cleanup, seed);
  }

  /**
   * Starts one VM: a spare of its shape when one is ready (spare-vms.ts), else launch() and
   * the QemuVm around it; a restore is loaded and checked before the guest runs.
   */
  private async startInternal(spec: VmSpec, probe: boolean, duringPrepare = false, mode: StartMode = { kind: 'cold', reason: 'boot probe' }): Promise<QemuVmHandle> {
    if (!probe) validateVmSpec(spec);
    const key = mode.kind === 'auto' && !mode.afterFailedRestore ? spareKey(spec, this.diskMib(spec)) : undefined;
    if (key !== undefined) {
      const spare = this.spares.take(key);
      const adopted = spare ? await this.adoptSpare(spec, spare) : undefined;
      if (adopted) {
        this.replenishSpare(key, spec, adopted);
        return adopted;
      }
    }
    // This VM's RAM comes first: spares that no longer fit beside it go.
    if (this.opts.spareRoomMib && !probe) this.spares.trim(this.opts.spareRoomMib() - spec.ramMib);
    const l = await this.launch(spec, probe, duringPrepare, mode);
    const { plan } = l;
    const capture = plan.kind === 'capture' ? plan : undefined;
    const handle = this.vmOf(spec, l, {
      ...(capture ? { beforeIdentity: (vm: QemuVm, agent: GuestAgent) => this.capture(vm, agent, spec, capture) } : {}),
    });
    await handle.spawned;
    if (plan.kind === 'restore') {
      try {
        await finishRestore(handle, plan.source);
      } catch (err) {
        await handle.kill();
        throw new RestoreFailed(plan.template, err);
      }
    }
    if (key !== undefined && (capture || (plan.kind === 'restore' && plan.template))) this.replenishSpare(key, spec, handle);
    return handle;
  }

  /**
   * Spawns QEMU for one VM (Firecracker's builder.rs shape): attach each device, each pushing
   * its undo onto one CleanupStack; plan the start (snapshot/start-plan.ts); build QEMU's argv
   * from the plain description they return (qemu-args.ts); spawn. A failure at any step runs
   * the stack; after the spawn whoever holds the result runs it once QEMU is gone.
   */
  private async launch(spec: VmSpec, probe: boolean, duringPrepare: boolean, mode: StartMode): Promise<LaunchedQemu> {
    const { kernel, initramfs } = duringPrepare ? await this.prepareFiles() : await this.prepare();
    // (Skipped with a launchPrefix: the VM may live in another network namespace.)
    if (!this.opts.launchPrefix) await checkForwardedPorts(spec);
    await mkdir(spec.stateDir, { recursive: true });
    const consoleLog = join(spec.stateDir, 'console.log');
    await writeFile(consoleLog, '');
    const cleanup = new CleanupStack();
    /** Sockets and files QEMU inherits as fd 3, 4, …: `-netdev socket,fd=N`, `-add-fd fd=N`. */
    const inherited: Array<Socket | number> = [];
    const inherit: InheritFd = (io) => 2 + inherited.push(io);
    try {
      // First, so that what QEMU reaches by path (its sockets) can be given to its uid.
      const uid = await attachVmUid(this.opts.vmUidBase ?? VM_UID_BASE, cleanup);
      const image = probe ? undefined : await attachImageBlock(spec, this.home, inherit, cleanup);
      const serial = await attachSerialPorts(cleanup, uid);
      const lane = probe ? undefined : await attachAgentLane(serial.runtimeDir, inherit, cleanup);
      const nets = await attachNics(spec, this.switches, inherit, cleanup);
      const volumes = attachVolumes(spec.volumes);
      const guestInputs: GuestInputs = { probe, disk: !probe, image: image?.fsType, capabilities: image?.capabilities ?? [], nets, volumes: volumes.guest };
      const guest = guestSpec(spec, guestInputs);
      const machine: QemuMachine = {
        accel: this.accel.accel,
        tcgCodeMib: this.opts.tcgCodeMib ?? tcgCodeMibFromEnv(),
        memMerge: this.opts.memMerge ?? memMergeFromEnv(),
        cpus: spec.cpus,
        ramMib: spec.ramMib,
        // Placeholders until planStart has decided: the real files for a boot, the restore stub
        // for a restore. The machine hash sees only these, so it is the same for both.
        kernel: BOOT_FILE_PLACEHOLDER,
        initrd: BOOT_FILE_PLACEHOLDER,
        tscKhz: hostTscKhz(readFileSync('/proc/cpuinfo', 'utf8')),
        consoleSocket: serial.console.path,
        image: image?.file,
        lane,
        serialPorts: serial.qemu,
        volumes: volumes.qemu,
        nics: nets.qemu,
        qmpSocket: serial.qmp.path,
      };
      const machineHash = sha256(machineShape({ ...machine, disk: { fds: [0, 0], path: '' } }).join('\0'));
      const plan = await planStart(this.planHost, spec, mode, { probe, imageId: image?.imageId, guest, machineHash, cleanup });
      // A restore's memory and CPU state come from the saved state: QEMU's loader would open and
      // parse the kernel and initramfs for nothing (docs/SNAPSHOTS.md "Boot files of a restore").
      const bootFiles = plan.kind === 'restore' ? await restoreStubFiles(this.home) : { kernel: kernel.vmlinux, initrd: initramfs.path };
      const boot = await attachBootFiles(bootFiles.kernel, bootFiles.initrd, inherit, cleanup);
      machine.kernel = boot.kernel;
      machine.initrd = boot.initrd;
      // The writable disk last: a template restore starts from the template's copy of it.
      const disk = probe ? undefined : await this.attachBudgetedDisk(spec, inherit, cleanup, plan.kind === 'restore' ? plan.source.upperPath : undefined);
      if (disk) machine.disk = disk;
      if (plan.kind === 'restore') machine.incomingFd = inherit((await inheritReadOnly(plan.source.statePath, cleanup)));
      const args = qemuArgs(machine);
      const argv = launchArgv({
        prefix: this.opts.launchPrefix,
        qemu: this.qemu,
        uid,
        groups: accelGroups(this.accel.accel),
        caps: qemuCaps(volumes.qemu.length > 0),
        args,
      });
      const t0 = Date.now();
      const child = spawnQemu(spec.id, argv, inherited);
      return { child, t0, plan, guest, guestInputs, machineHash, uid, serial, lane, cleanup, consoleLog, imageId: image?.imageId };
    } catch (e) {
      await cleanup.runAll();
      throw e;
    }
  }

  /** The QemuVm of a launched QEMU (which then owns its cleanup). */
  private vmOf(spec: VmSpec, l: LaunchedQemu, o: Pick<QemuVmInit, 'beforeIdentity' | 'qmpClient'> & { t0?: number; consoleLog?: string; boot?: VmBootSource; guest?: GuestSpec }): QemuVm {
    const { plan, serial } = l;
    const guest = o.guest ?? l.guest;
    const neutral = plan.kind !== 'cold';
    const fromTemplate = plan.kind === 'capture' || (plan.kind === 'restore' && plan.template !== undefined);
    try {
      return new QemuVm({
        spec, child: l.child, t0: o.t0 ?? l.t0, consoleLog: o.consoleLog ?? l.consoleLog, runtimeDir: serial.runtimeDir,
        ...(plan.kind === 'restore' ? {} : { guestSpec: encodeGuestSpec(neutral ? neutralGuestSpec(guest) : guest) }),
        qmp: serial.qmp.conn,
        ...(o.qmpClient ? { qmpClient: o.qmpClient } : {}),
        ...(neutral ? { identity: templateIdentity(guest, plan.kind === 'restore' ? plan.template?.meta.macs : undefined) } : {}),
        // Its command, after REFRESH: the template it comes from (or becomes) is a sandbox.
        ...(fromTemplate && !spec.sandbox ? { mainCommand: encodeMainCommand(guest) } : {}),
        ...(o.beforeIdentity ? { beforeIdentity: o.beforeIdentity } : {}),
        boot: o.boot ?? plan.boot,
        machine: l.machineHash,
        ...(l.uid !== undefined ? { uid: l.uid } : {}),
        console: serial.console.conn, consoleLimitBytes: this.opts.consoleLimitBytes ?? 1 << 20,
        ctl: serial.ports.control.conn, out: serial.ports.stdout.conn, err: serial.ports.stderr.conn, agent: serial.ports.agent.conn,
        agentLane: l.lane?.host,
        bootTimeoutMs: spec.bootTimeoutMs ?? this.opts.bootTimeoutMs ?? 60_000,
        cleanup: l.cleanup,
        home: this.home,
      });
    } catch (e) {
      l.child.kill('SIGKILL');
      void l.cleanup.runAll();
      throw e;
    }
  }

  /**
   * A restore made ahead of the request (docs/SNAPSHOTS.md "Spares"): the QEMU of a sandbox of
   * this shape, its template's state loaded and checked, stopped before `cont`. It lives in
   * `<home>/spares/<id>` until a start adopts it (adoptSpare) or the pool discards it.
   */
  private async makeSpare(like: VmSpec): Promise<SpareQemu> {
    const id = `spare-${randomBytes(6).toString('hex')}`;
    const stateDir = join(this.home.root, 'spares', id);
    const spec: VmSpec = {
      id, rootfs: like.rootfs, command: '', args: [], env: [], sandbox: true, cpus: like.cpus, ramMib: like.ramMib, volumes: [], ports: [], stateDir, network: { mode: 'none' },
      ...(like.diskMib !== undefined ? { diskMib: like.diskMib } : {}),
      ...(like.rlimits ? { rlimits: like.rlimits } : {}),
    };
    let l: LaunchedQemu;
    try {
      l = await this.launch(spec, false, false, { kind: 'spare' });
    } catch (err) {
      await rm(stateDir, { recursive: true, force: true });
      throw err;
    }
    const template = l.plan.kind === 'restore' ? l.plan.template : undefined;
    if (l.plan.kind !== 'restore' || !template) {
      // planStart's 'spare' mode restores a template or throws: this is a bug, not a condition.
      l.child.kill('SIGKILL');
      await l.cleanup.runAll();
      throw new Error(`a spare must be a template restore, got ${l.plan.kind}`);
    }
    const watch = new ChildProcessWatch(l.child, { goneOn: 'exit', onSpawnError: () => undefined, home: this.home, record: { id, runtimeDir: l.serial.runtimeDir, backend: 'qemu' } });
    let stderr = '';
    const onStderr = (d: Buffer): void => void (stderr.length < 4096 && (stderr += d.toString('utf8')));
    l.child.stderr?.on('data', onStderr);
    let adopted = false;
    // Never rejects: nobody may be waiting on it (a spare that dies on its own).
    const gone = watch.gone.then(async () => {
      if (adopted) return;
      this.spares.forget(spare);
      try {
        await l.cleanup.runAll();
        if (watch.pidFile) removePidRecord(watch.pidFile);
        await rm(stateDir, { recursive: true, force: true });
      } catch (err) {
        this.opts.logger?.debug({ spare: id, reason: (err as Error).message }, 'spare cleanup failed');
      }
    });
    const spare: SpareQemu = {
      id, launched: l, template, stateDir, madeAt: 0,
      qmp: undefined as unknown as QmpClient,
      alive: () => l.child.exitCode === null && l.child.signalCode === null,
      discard: async () => {
        if (adopted) return;
        l.child.kill('SIGKILL');
        await gone;
      },
      adopt: () => {
        adopted = true;
        l.child.stderr?.off('data', onStderr);
        return watch.pidFile;
      },
    };
    try {
      await watch.spawned;
      const conn = await Promise.race([l.serial.qmp.conn, watch.gone.then(() => undefined)]);
      if (!conn) throw new Error(`QEMU exited before its QMP monitor connected: ${stderr.trim()}`);
      const source = l.plan.source;
      spare.qmp = await loadRestoredState(() => QmpClient.open(conn, id), source);
    } catch (err) {
      await spare.discard();
      throw err;
    }
    spare.madeAt = Date.now();
    return spare;
  }

  /**
   * Gives a ready spare to `spec`'s start: its disk renamed into the VM's state dir (QEMU holds
   * it by descriptor), a QemuVm around its QEMU with this VM's identity, `cont`. Undefined when
   * it cannot serve (it died, its template changed or is gone): the caller starts as usual.
   */
  private async adoptSpare(spec: VmSpec, spare: SpareQemu): Promise<QemuVmHandle | undefined> {
    const l = spare.launched;
    const disk = writableDiskPath(spec.stateDir);
    const found = await this.templates.lookup(spare.template.meta.shape).catch(() => ({ template: undefined }));
    const why = !spare.alive()
      ? 'its QEMU is gone'
      : found.template?.meta.state.sha256 !== spare.template.meta.state.sha256
        ? 'its template was removed or replaced'
        : templateIneligibility(spec, l.imageId, existsSync(disk));
    if (why !== undefined) {
      this.opts.logger?.debug({ vm: spec.id, spare: spare.id, reason: why }, 'spare not used');
      await spare.discard();
      return undefined;
    }
    const t0 = Date.now();
    let handle: QemuVm | undefined;
    let sparePidFile: string | undefined;
    let adopted = false;
    try {
      await mkdir(spec.stateDir, { recursive: true });
      const consoleLog = join(spec.stateDir, 'console.log');
      await writeFile(consoleLog, '');
      await rename(writableDiskPath(spare.stateDir), disk);
      if (!spare.alive()) throw new Error('its QEMU is gone');
      sparePidFile = spare.adopt();
      adopted = true;
      handle = this.vmOf(spec, l, {
        t0, consoleLog, qmpClient: spare.qmp,
        guest: guestSpec(spec, l.guestInputs),
        boot: { from: 'template', reason: `template ${spare.template.key}, restored ahead of this start (${spare.id}, ready ${Math.round((t0 - spare.madeAt) / 1000)} s before)` },
      });
      await handle.spawned; // its pid record (under this VM's id) is written: the spare's goes
      if (sparePidFile) removePidRecord(sparePidFile);
      await rm(spare.stateDir, { recursive: true, force: true });
      await spare.qmp.execute('cont');
      handle.markRestored();
      return handle;
    } catch (err) {
      this.opts.logger?.debug({ vm: spec.id, spare: spare.id, reason: (err as Error).message }, 'spare not used');
      if (handle) await handle.kill();
      else await spare.discard(); // (vmOf failed after adopt(): it killed QEMU and ran the cleanup)
      if (adopted) {
        // The spare no longer discards itself: its record and dir are ours to remove.
        if (sparePidFile) removePidRecord(sparePidFile);
        await rm(spare.stateDir, { recursive: true, force: true });
      }
      await rm(disk, { force: true });
      return undefined;
    }
  }

  /** After a start of a spare's shape, the next one is made (soon, off this start's path). */
  private replenishSpare(key: string, spec: VmSpec, vm: QemuVmHandle): void {
    if (!this.spares.enabled) return;
    // Once this VM's agent answered (or it failed): a spare's load must not slow the start it follows.
    void vm.agent().catch(() => undefined).then(() => {
      setTimeout(() => {
        try {
          this.spares.replenish(key, spec.ramMib, () => this.makeSpare(spec));
        } catch (err) {
          // (the host's room could not be read): no spare this time, and never an uncaught error in a timer.
          this.opts.logger?.debug({ vm: spec.id, reason: (err as Error).message }, 'spare not made');
        }
      }, SPARE_AFTER_MS).unref();
    });
  }

  /** Discards the spares (a worker shutting down; a test). VMs already started are not touched. */
  async close(): Promise<void> {
    await this.spares.close();
  }

  /** Spares ready to be adopted and their guest RAM (resident while they wait): GET /hosts. */
  get spareUsage(): { count: number; ramMib: number } {
    return this.spares.readyUsage;
  }

  /** The spares ready now (tests, status). */
  get readySpares(): ReadonlyArray<{ id: string; pid: number; template: string }> {
    return this.spares.ready.map((s) => ({ id: s.id, pid: s.launched.child.pid ?? -1, template: s.template.key }));
  }

  private diskMib(spec: VmSpec): number {
    return spec.diskMib ?? this.opts.diskSizeMib ?? DEFAULT_DISK_MIB;
  }

  /** What planStart (snapshot/start-plan.ts) sees of this backend. */
  private get planHost(): StartPlanHost {
    return {
      home: this.home,
      templates: this.templates,
      bootFiles: () => this.prepareFiles(),
      qemuVersion: () => this.qemuVersionLine(),
      accel: this.accel.accel,
      diskMib: (spec) => this.diskMib(spec),
    };
  }

  /** Saves the template from a VM that booted neutral; a failure only costs the template. */
  private async capture(vm: QemuVm, agent: GuestAgent, spec: VmSpec, plan: Extract<StartPlan, { kind: 'capture' }>): Promise<void> {
    try {
      await warmTemplatePageCache(agent, warmUpPrograms(spec), spec.env).catch((err: unknown) => {
        this.opts.logger?.debug({ vm: spec.id, reason: (err as Error).message }, 'template warm-up failed');
      });
      const t = await captureTemplate(vm, { store: this.templates, shape: plan.shape, macs: plan.macs });
      vm.boot.reason = `${vm.boot.reason}; saved template ${t.key} (${t.meta.state.bytes} bytes, ${t.meta.saveMs} ms)`;
    } catch (err) {
      const reason = `saving the template failed: ${(err as Error).message}`;
      vm.boot.reason = `${vm.boot.reason}; ${reason}`;
      this.opts.logger?.debug({ vm: spec.id, reason }, 'template not saved');
    } finally {
      await plan.release();
    }
  }
}

/** What guestSpec() takes besides the spec: what the attach functions returned. */
interface GuestInputs {
  probe: boolean;
  disk: boolean;
  image?: GuestSpec['image'];
  capabilities: GuestSpec['capabilities'];
  nets: { guest: GuestSpec['nics']; hosts: string[]; dns?: string[] };
  volumes: GuestSpec['volumes'];
}

/** A QEMU spawned for a VM, with what its start allocated (undone by `cleanup`): what a QemuVm is built around. */
interface LaunchedQemu {
  child: ChildProcess;
  t0: number;
  plan: StartPlan;
  guest: GuestSpec;
  guestInputs: GuestInputs;
  machineHash: string;
  uid?: number;
  serial: SerialPorts;
  lane?: QemuFile & { host: FileHandle };
  cleanup: CleanupStack;
  consoleLog: string;
  imageId?: string;
}

/** A spare (makeSpare): a launched QEMU whose template state is loaded, held until adopted or discarded. */
interface SpareQemu extends Spare {
  id: string;
  launched: LaunchedQemu;
  template: Template;
  /** Its own dir (`<home>/spares/<id>`): its writable disk until adopted. */
  stateDir: string;
  /** When its state was loaded (ms since the epoch). */
  madeAt: number;
  qmp: QmpClient;
  alive(): boolean;
  /** Now a VM's: it stops discarding itself when QEMU ends; returns its pid record (for the caller to remove). */
  adopt(): string | undefined;
}

/** A restore that did not work out: start() deletes the template and boots cold. */
class RestoreFailed extends Error {
  constructor(readonly template: Template | undefined, cause: unknown) {
    super(`restore failed`, { cause });
  }
}

/**
 * What the machine hash sees for `-kernel` and `-initrd`: machineShape() writes every
 * `/proc/self/fd/N` this way, so hashes match those of VMs saved before the boot files were
 * attached after planStart (templates and paused VMs of earlier builds stay usable).
 */
const BOOT_FILE_PLACEHOLDER = '/proc/self/fd/N';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

async function inheritReadOnly(path: string, cleanup: CleanupStack): Promise<number> {
  const fh = await open(path, 'r');
  cleanup.push(() => fh.close());
  return fh.fd;
}

/** What the guest init is told (guest-protocol.ts), from the spec and what the attach functions returned. */
function guestSpec(spec: VmSpec, a: GuestInputs): GuestSpec {
  return {
    argv: spec.sandbox ? [] : [spec.command, ...spec.args],
    agent: !a.probe,
    sandbox: spec.sandbox === true,
    env: spec.env,
    workdir: spec.workdir ?? '/',
    ...(spec.user !== undefined ? { user: spec.user } : {}),
    ...(spec.discardDiskOnExit ? { discardDisk: true } : {}),
    hostname: spec.hostname ?? spec.id,
    disk: a.disk,
    ...(a.image ? { image: a.image } : {}),
    volumes: a.volumes,
    nics: a.nets.guest,
    hosts: a.nets.hosts,
    ...(a.nets.dns ? { dns: a.nets.dns } : {}),
    rlimits: (spec.rlimits ?? []).map((r) => ({ resource: RLIMIT_NUMBERS[r.resource], soft: r.soft, hard: r.hard })),
    capabilities: a.capabilities,
    probe: a.probe,
  };
}

/** Spawns QEMU with the NIC sockets and files as fd 3, 4, …; then closes our copies of the sockets. */
function spawnQemu(id: string, argv: string[], inherited: Array<Socket | number>): ChildProcess {
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', ...inherited] });
    // QEMU holds its own copies of the NIC sockets now; ours must never read from them.
    // (Files stay open until the VM's cleanup: closing a number here could close a reused fd later.)
    for (const s of inherited) if (typeof s !== 'number') s.destroy();
    return child;
  } catch (e) {
    throw new MonocoreError('MC_VM_START_FAILED', `${id}: cannot spawn ${argv[0]}: ${(e as Error).message}`, { id }, { cause: e });
  }
}
