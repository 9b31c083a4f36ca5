import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import { MonocoreHome } from '../home/index.js';
import { detectAccel, hostTscKhz, type Accel, type AccelChoice } from './acceleration.js';
import { CleanupStack } from './cleanup-stack.js';
import { DiskBudget, diskReserveFromEnv } from './disk-budget.js';
import { findGuestKernel, type GuestKernel } from './guest-kernel.js';
import { encodeGuestSpec, RLIMIT_NUMBERS, type GuestSpec } from './guest-protocol.js';
import { GroupSwitches } from './group-switches.js';
import type { BackendAvailability, HypervisorBackend } from './hypervisor-backend.js';
import { buildInitramfs, type Initramfs } from './initramfs-builder.js';
import { findExecutable } from './find-executable.js';
import { launchArgv, qemuArgs, qemuCaps, type QemuFile } from './qemu-args.js';
import {
  accelGroups, attachAgentLane, attachBootFiles, attachImageBlock, attachNics, attachSerialPorts, attachVmUid, attachVolumes, attachWritableDisk,
  checkForwardedPorts, VM_UID_BASE, writableDiskPath, type InheritFd,
} from './qemu-devices.js';
import { QemuVm, type QemuVmHandle } from './qemu-vm.js';
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
}

const DEFAULT_DISK_MIB = 4096;
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

  constructor(private readonly opts: QemuBackendOptions = {}) {
    this.home = opts.home ?? new MonocoreHome();
    this.qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.disks = new DiskBudget(opts.diskReserveMib ?? diskReserveFromEnv());
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

  /** `qemu-system-x86_64 --version`'s first line (for doctor), or the reason it cannot run. */
  version(): string {
    const v = spawnSync(this.qemu, ['--version'], { encoding: 'utf8' });
    if (v.error || v.status !== 0) return `${this.qemu} does not run: ${v.error?.message ?? v.stderr.trim()}`;
    return (v.stdout.split('\n')[0] ?? '').trim();
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

  async start(spec: VmSpec): Promise<QemuVmHandle> {
    return this.startInternal(spec, false);
  }

  /**
   * Starts one VM (Firecracker's builder.rs shape): attach each device, each
   * pushing its undo onto one CleanupStack; build QEMU's argv from the plain
   * description they return (qemu-args.ts); spawn. A failure at any step runs
   * the stack; after the spawn the VM runs it once QEMU is gone (qemu-vm.ts).
   */
  /** The writable disk, admitted by the host's disk budget first (released once QEMU is gone). */
  private async attachBudgetedDisk(spec: VmSpec, inherit: InheritFd, cleanup: CleanupStack): Promise<QemuFile> {
    const sizeMib = spec.diskMib ?? this.opts.diskSizeMib ?? DEFAULT_DISK_MIB;
    cleanup.push(this.disks.admit(spec.id, writableDiskPath(spec.stateDir), sizeMib));
    return attachWritableDisk(spec.stateDir, sizeMib, inherit, cleanup);
  }

  private async startInternal(spec: VmSpec, probe: boolean, duringPrepare = false): Promise<QemuVmHandle> {
    if (!probe) validateVmSpec(spec);
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
    let handle: QemuVm;
    try {
      // First, so that what QEMU reaches by path (its sockets) can be given to its uid.
      const uid = await attachVmUid(this.opts.vmUidBase ?? VM_UID_BASE, cleanup);
      const boot = await attachBootFiles(kernel.vmlinux, initramfs.path, inherit, cleanup);
      const image = probe ? undefined : await attachImageBlock(spec, this.home, inherit, cleanup);
      const disk = probe ? undefined : await this.attachBudgetedDisk(spec, inherit, cleanup);
      const serial = await attachSerialPorts(cleanup, uid);
      const lane = probe ? undefined : await attachAgentLane(serial.runtimeDir, inherit, cleanup);
      const nets = await attachNics(spec, this.switches, inherit, cleanup);
      const volumes = attachVolumes(spec.volumes);
      const guest = guestSpec(spec, { probe, disk: disk !== undefined, image: image?.fsType, capabilities: image?.capabilities ?? [], nets, volumes: volumes.guest });
      const args = qemuArgs({
        accel: this.accel.accel,
        tcgCodeMib: this.opts.tcgCodeMib ?? tcgCodeMibFromEnv(),
        cpus: spec.cpus,
        ramMib: spec.ramMib,
        kernel: boot.kernel,
        initrd: boot.initrd,
        tscKhz: hostTscKhz(readFileSync('/proc/cpuinfo', 'utf8')),
        consoleSocket: serial.console.path,
        image: image?.file,
        disk,
        lane,
        serialPorts: serial.qemu,
        volumes: volumes.qemu,
        nics: nets.qemu,
      });
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
      handle = new QemuVm({
        spec, child, t0, consoleLog, runtimeDir: serial.runtimeDir, guestSpec: encodeGuestSpec(guest),
        console: serial.console.conn, consoleLimitBytes: this.opts.consoleLimitBytes ?? 1 << 20,
        ctl: serial.ports.control.conn, out: serial.ports.stdout.conn, err: serial.ports.stderr.conn, agent: serial.ports.agent.conn,
        agentLane: lane?.host,
        bootTimeoutMs: spec.bootTimeoutMs ?? this.opts.bootTimeoutMs ?? 60_000,
        cleanup,
        home: this.home,
      });
    } catch (e) {
      await cleanup.runAll();
      throw e;
    }
    await handle.spawned;
    return handle;
  }
}

/** What the guest init is told (guest-protocol.ts), from the spec and what the attach functions returned. */
function guestSpec(
  spec: VmSpec,
  a: { probe: boolean; disk: boolean; image?: GuestSpec['image']; capabilities: GuestSpec['capabilities']; nets: { guest: GuestSpec['nics']; hosts: string[]; dns?: string[] }; volumes: GuestSpec['volumes'] },
): GuestSpec {
  return {
    argv: spec.sandbox ? [] : [spec.command, ...spec.args],
    agent: !a.probe,
    sandbox: spec.sandbox === true,
    env: spec.env,
    workdir: spec.workdir ?? '/',
    ...(spec.user !== undefined ? { user: spec.user } : {}),
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
