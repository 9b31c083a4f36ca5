import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, fstatSync, statSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { MonocoreError } from '../errors/index.js';
import { MonocoreHome } from '../home/index.js';
import { OWNERSHIP_FILE, type OwnershipRecordFile } from '../rootfs/ownership-record.js';
import { detectAccel, hostTscKhz, type Accel, type AccelChoice } from './acceleration.js';
import { findGuestKernel, type GuestKernel } from './guest-kernel.js';
import { encodeGuestSpec, parseGuestEvent, RLIMIT_NUMBERS, type GuestSpec } from './guest-protocol.js';
import { GroupSwitch, groupMac } from './group-switch.js';
import type { BackendAvailability, HypervisorBackend, VmHandle } from './hypervisor-backend.js';
import { buildInitramfs, type Initramfs } from './initramfs-builder.js';
import { ChildProcessWatch } from './child-process-watch.js';
import { EgressNetwork } from './egress-network.js';
import { findExecutable } from './find-executable.js';
import { HostSlots } from './host-slots.js';
import { removePidRecord } from './orphans.js';
import { validateVmSpec } from './vm-spec-validation.js';
import type { VmExit, VmSpec } from './vm-spec.js';

export { findExecutable };

const run = promisify(execFile);

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
  /** Size of the sparse per-service ext4 disk (default 4096 MiB; blocks are allocated on write). */
  diskSizeMib?: number;
  /** Default boot watchdog when the spec sets none (default 60 s). */
  bootTimeoutMs?: number;
  /** Cap of <stateDir>/console.log per boot (default 1 MiB); later output is counted, not stored. */
  consoleLimitBytes?: number;
  /** First uid of the per-VM uid range used when running as root (default 0x70000000; 65,536 uids). */
  vmUidBase?: number;
}

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
}

export interface QemuVmHandle extends VmHandle {
  readonly timings: BootTimings;
  readonly consoleLog: string;
}

const DEFAULT_DISK_MIB = 4096;
const PORT_FWD_MAC = '52:55:0a:00:02:0f';
const EGRESS_MAC = '52:56:64:7f:00:02';
/** QEMU runs as VM_UID_BASE + slot (root only): high, unnamed uids no account uses. */
const VM_UID_BASE = 0x70000000;
const vmUids = new HostSlots('/run/monocore/vm-uids', 65536, 'per-VM uids');
/** Linux capabilities QEMU keeps (setpriv --bounding-set): read the image and write mapped-xattr volumes, nothing else. */
const QEMU_CAPS = '-all,+dac_override,+dac_read_search,+fowner';

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
  private readonly switches = new Map<string, { sw: GroupSwitch; dir: string; members: number }>();
  private readonly switchOpening = new Map<string, Promise<{ sw: GroupSwitch; dir: string; members: number }>>();

  constructor(private readonly opts: QemuBackendOptions = {}) {
    this.home = opts.home ?? new MonocoreHome();
    this.qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
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

  private async startInternal(spec: VmSpec, probe: boolean, duringPrepare = false): Promise<QemuVmHandle> {
    if (!probe) validateVmSpec(spec);
    const { kernel, initramfs } = duringPrepare ? await this.prepareFiles() : await this.prepare();
    // A taken host port would only surface as a QEMU start error: say which one up front.
    // (Skipped with a launchPrefix: the VM may live in another network namespace.)
    if (!this.opts.launchPrefix) {
      for (const [i, p] of spec.ports.entries()) {
        const addr = p.bindAddress ?? '127.0.0.1';
        const problem = await portProblem(addr, p.host);
        if (problem) {
          throw new MonocoreError('MC_VM_START_FAILED', `vm ${JSON.stringify(spec.id)}: ports[${i}]: cannot forward ${addr}:${p.host}: ${problem}`, { id: spec.id, field: `ports[${i}].host` });
        }
      }
    }
    await mkdir(spec.stateDir, { recursive: true });
    const disk = probe ? undefined : await this.prepareDisk(spec.stateDir);
    // Unix socket paths are limited to 108 bytes: keep them in a short private dir.
    const runtimeDir = await mkdtemp(join(tmpdir(), 'mcvm-'));
    const consoleLog = join(spec.stateDir, 'console.log');
    await writeFile(consoleLog, '');

    const servers: Server[] = [];
    const listen = async (name: string): Promise<{ path: string; conn: Promise<Socket> }> => {
      const path = join(runtimeDir, `${name}.sock`);
      const server = createServer();
      servers.push(server);
      const conn = new Promise<Socket>((resolve) => server.once('connection', resolve));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      return { path, conn };
    };
    const con = await listen('console');
    const ctl = await listen('control');
    const out = await listen('stdout');
    const err = await listen('stderr');

    let group: { sw: GroupSwitch; dir: string; members: number } | undefined;
    let groupKey: string | undefined;
    let releaseNetwork: () => Promise<void> = async () => {};
    let groupSock: Socket | undefined;
    /** Sockets QEMU inherits as fd 3, 4, …: `-netdev socket,fd=N`. */
    const inherited: Socket[] = [];
    const guest: GuestSpec = {
      argv: [spec.command, ...spec.args],
      env: spec.env,
      workdir: spec.workdir ?? '/',
      ...(spec.user !== undefined ? { user: spec.user } : {}),
      hostname: spec.hostname ?? spec.id,
      disk: disk !== undefined,
      volumes: spec.volumes.map((v, i) => ({ tag: `vol${i}`, guest: v.guest, readOnly: v.readOnly ?? false })),
      nics: [],
      hosts: [],
      rlimits: (spec.rlimits ?? []).map((r) => ({ resource: RLIMIT_NUMBERS[r.resource], soft: r.soft, hard: r.hard })),
      capabilities: probe ? [] : imageCapabilities(spec.rootfs),
      probe,
    };
    const netArgs: string[] = [];
    try {
      if (spec.network.mode === 'group') {
        const net = spec.network;
        groupKey = net.group;
        group = await this.joinGroup(net.group);
        const mac = groupMac(net.address);
        releaseNetwork = async () => {
          groupSock?.destroy();
          await this.leaveGroup(net.group);
        };
        // The group segment: a connected socket to our in-process switch, passed
        // as fd 3. No host interface is attached to the segment, so nothing but
        // the group's VMs is on it.
        groupSock = await group.sw.connectPort(mac);
        inherited.push(groupSock);
        netArgs.push('-netdev', `socket,id=grp,fd=${2 + inherited.length}`);
        netArgs.push('-device', `virtio-net-device,netdev=grp,mac=${mac}`);
        guest.nics.push({ mac, cidr: net.address });
        const self = net.address.split('/')[0];
        guest.hosts.push(`${self}\t${spec.hostname ?? spec.id}`);
        for (const [name, addr] of Object.entries(net.peers)) guest.hosts.push(`${addr.split('/')[0]}\t${name}`);
        if (!net.localOnly) {
          // Outbound access: a NIC to passt in a namespace of its own, whose way out
          // is filtered on the host so that it never leads back to it (egress-network.ts).
          const egress = await EgressNetwork.open(spec.id);
          const leaveGroup = releaseNetwork;
          releaseNetwork = async () => {
            await leaveGroup();
            await egress.close();
          };
          inherited.push(egress.socket);
          netArgs.push('-netdev', `socket,id=egr,fd=${2 + inherited.length}`);
          netArgs.push('-device', `virtio-net-device,netdev=egr,mac=${EGRESS_MAC}`);
          guest.nics.push({ mac: EGRESS_MAC, cidr: egress.guest.cidr, gateway: egress.guest.gateway });
          guest.dns = egress.guest.dns;
        }
      }
      if (spec.ports.length > 0) {
        // Port forwarding through slirp with restrict=on: hostfwd still works,
        // but the guest cannot open connections to the host (10.0.2.2 is the
        // host's loopback!) or anywhere else, and gets no DNS. A separate NIC,
        // so the group segment stays a pure L2 island.
        const fwds = spec.ports.map((p) => `hostfwd=tcp:${p.bindAddress ?? '127.0.0.1'}:${p.host}-:${p.guest}`).join(',');
        netArgs.push('-netdev', `user,id=pf,restrict=on,net=10.0.2.0/24,${fwds}`);
        netArgs.push('-device', `virtio-net-device,netdev=pf,mac=${PORT_FWD_MAC}`);
        guest.nics.push({ mac: PORT_FWD_MAC, cidr: '10.0.2.15/24' });
      }
    } catch (e) {
      await releaseNetwork();
      for (const s of servers) s.close();
      await rm(runtimeDir, { recursive: true, force: true });
      throw e;
    }

    const accel = this.accel.accel;
    const tscKhz = hostTscKhz(readFileSync('/proc/cpuinfo', 'utf8'));
    const cmdline = [
      'console=ttyS0', // kernel messages to the serial port = console.log, never to the service's stdout
      'panic=-1', // a guest kernel panic ends the VM at once (with -no-reboot) instead of hanging
      'reboot=t', // reboot via triple fault: with -no-reboot, QEMU exits
      'quiet',
      'no_timer_check', // skip the IO-APIC timer check that hangs ~1 in 3 TCG boots (PLATFORM.md)
      ...(tscKhz ? [`tsc_early_khz=${tscKhz}`] : []), // skip TSC calibration: without it 1 boot in 4-8 hangs under TCG
      'rdinit=/init',
    ].join(' ');
    const args = [
      // microvm: no PCI/ACPI tables to probe; x-option-roms=off skips the option ROM scan;
      // rtc=on and isa-serial=on: the RTC helped avoid timer hangs and ttyS0 is our console.
      '-M', 'microvm,x-option-roms=off,rtc=on,isa-serial=on',
      // TCG: thread=single was the verified-stable mode here; KVM/HVF when usable.
      '-accel', accel === 'tcg' ? 'tcg,thread=single' : accel,
      // -cpu host fails on this host's KVM ("failed to set MSR 0x10a"); max is right for TCG.
      '-cpu', accel === 'tcg' ? 'max' : 'host',
      '-m', String(spec.ramMib),
      '-smp', String(spec.cpus),
      '-nodefaults', '-no-user-config', // no default devices, no /etc/qemu config
      '-display', 'none', '-monitor', 'none', // no stdio muxing: QEMU's own stderr stays for errors
      '-no-reboot', // a guest reboot (or panic) ends the process
      // seccomp filter on QEMU itself: no obsolete syscalls, no setuid/setgid, no fork/exec,
      // no scheduler/affinity games — what a guest that escaped into QEMU could use next.
      '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
      // The console goes through us (not `-serial file:`) so a guest flooding it cannot fill the
      // host disk: console.log is capped (consoleLimitBytes), the last 64 KiB are kept in memory.
      '-chardev', `socket,id=con,path=${con.path}`,
      '-serial', 'chardev:con',
      '-kernel', kernel.vmlinux, // uncompressed ELF via PVH: bzImage decompression crawls under TCG
      '-initrd', initramfs.path,
      '-append', cmdline,
      // Image rootfs: read-only share, the overlay's lower layer. security_model=none so the guest
      // sees the image's real owners/modes; readonly=on so it can never write (no setuid planting).
      '-fsdev', `local,id=rootfs,path=${probe ? spec.stateDir : spec.rootfs},security_model=none,readonly=on`,
      '-device', 'virtio-9p-device,fsdev=rootfs,mount_tag=rootfs',
      // control / stdout / stderr: virtio-serial ports to our unix sockets (kept apart from the console).
      '-device', 'virtio-serial-device,max_ports=4',
      '-chardev', `socket,id=ctl,path=${ctl.path}`,
      '-device', 'virtserialport,chardev=ctl,name=monocore.control',
      '-chardev', `socket,id=out,path=${out.path}`,
      '-device', 'virtserialport,chardev=out,name=monocore.stdout',
      '-chardev', `socket,id=err,path=${err.path}`,
      '-device', 'virtserialport,chardev=err,name=monocore.stderr',
    ];
    if (disk) {
      // Per-service writable layer: sparse raw ext4 file; cache=unsafe is not used so a host
      // crash cannot lose what the guest fsync()ed.
      args.push('-drive', `file=${disk},format=raw,if=none,id=upper,discard=unmap`);
      args.push('-device', 'virtio-blk-device,drive=upper');
    }
    spec.volumes.forEach((v, i) => {
      // Volumes: mapped-xattr, so guest-chosen owners/modes (setuid, devices) are stored as
      // user.virtfs.* xattrs and the host only ever sees plain 0600 files (docs/THREATS.md).
      args.push('-fsdev', `local,id=vol${i},path=${v.host},security_model=mapped-xattr${v.readOnly ? ',readonly=on' : ''}`);
      args.push('-device', `virtio-9p-device,fsdev=vol${i},mount_tag=vol${i}`);
    });
    args.push(...netArgs);

    // As root, each VM's QEMU runs as a uid of its own (VM_UID_BASE + a host-wide slot, no
    // passwd entry), keeping only the capabilities it needs as ambient ones: after an
    // escape it cannot signal or ptrace root's processes or other VMs, nor make a file
    // setuid-root (docs/THREATS.md).
    const vmUid = process.getuid?.() === 0 ? await vmUids.acquire() : undefined;
    const uid = vmUid ? (this.opts.vmUidBase ?? VM_UID_BASE) + vmUid.slot : undefined;
    // setpriv: --pdeathsig KILL kills QEMU when its supervising process dies (no orphans);
    // --bounding-set keeps only the capabilities QEMU needs for the shares; --no-new-privs.
    const argv = [
      ...(this.opts.launchPrefix ?? []),
      'setpriv', '--pdeathsig', 'KILL', '--no-new-privs', '--bounding-set', QEMU_CAPS,
      ...(uid !== undefined
        ? ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', '--inh-caps', QEMU_CAPS, '--ambient-caps', QEMU_CAPS]
        : []),
      '--', this.qemu, ...args,
    ];
    const releaseUid = async (): Promise<void> => {
      await vmUid?.lock.release();
    };
    const t0 = Date.now();
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', ...inherited] });
      // QEMU holds its own copies of the NIC sockets now; ours must never read from them.
      for (const s of inherited) s.destroy();
    } catch (e) {
      await releaseNetwork();
      await releaseUid();
      for (const s of servers) s.close();
      await rm(runtimeDir, { recursive: true, force: true });
      throw new MonocoreError('MC_VM_START_FAILED', `${spec.id}: cannot spawn ${argv[0]}: ${(e as Error).message}`, { id: spec.id }, { cause: e });
    }
    const handle = new QemuVm({
      spec, child, t0, consoleLog, runtimeDir, servers, guestSpec: encodeGuestSpec(guest),
      console: con.conn, consoleLimitBytes: this.opts.consoleLimitBytes ?? 1 << 20,
      ctl: ctl.conn, out: out.conn, err: err.conn,
      bootTimeoutMs: spec.bootTimeoutMs ?? this.opts.bootTimeoutMs ?? 60_000,
      onGone: async () => {
        await releaseNetwork();
        await releaseUid(); // only once QEMU is gone: no two live VMs share a uid
      },
      home: this.home,
      groupKey,
    });
    await handle.spawned;
    return handle;
  }

  /** Creates the per-service sparse ext4 disk once; later starts reuse it (writes persist). */
  private async prepareDisk(stateDir: string): Promise<string> {
    const disk = join(stateDir, 'upper.ext4');
    if (existsSync(disk)) return disk;
    const tmp = `${disk}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, '');
      await truncate(tmp, (this.opts.diskSizeMib ?? DEFAULT_DISK_MIB) * 1024 * 1024);
      // -m 0: no root reserve; lazy init keeps mkfs O(1) in disk size.
      await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', tmp]);
      await rename(tmp, disk);
    } catch (e) {
      await rm(tmp, { force: true });
      const stderr = (e as { stderr?: string }).stderr;
      throw new MonocoreError('MC_VM_DISK_PREPARE_FAILED', `cannot create ${disk}: ${stderr?.trim() || (e as Error).message}`, { path: disk }, { cause: e });
    }
    return disk;
  }

  private async joinGroup(group: string): Promise<{ sw: GroupSwitch; dir: string; members: number }> {
    const existing = this.switches.get(group);
    if (existing) {
      existing.members++;
      return existing;
    }
    let opening = this.switchOpening.get(group);
    if (!opening) {
      opening = (async () => {
        const dir = await mkdtemp(join(tmpdir(), 'mcnet-'));
        const sw = await GroupSwitch.listen(join(dir, 'switch.sock'));
        const entry = { sw, dir, members: 0 };
        this.switches.set(group, entry);
        return entry;
      })();
      this.switchOpening.set(group, opening);
      opening.finally(() => this.switchOpening.delete(group)).catch(() => {});
    }
    const entry = await opening;
    entry.members++;
    return entry;
  }

  private async leaveGroup(group: string): Promise<void> {
    const entry = this.switches.get(group);
    if (!entry) return;
    entry.members--;
    if (entry.members <= 0) {
      this.switches.delete(group);
      await entry.sw.close();
      await rm(entry.dir, { recursive: true, force: true });
    }
  }
}

interface QemuVmInit {
  spec: VmSpec;
  child: ChildProcess;
  t0: number;
  consoleLog: string;
  console: Promise<Socket>;
  consoleLimitBytes: number;
  runtimeDir: string;
  servers: Server[];
  guestSpec: Buffer;
  ctl: Promise<Socket>;
  out: Promise<Socket>;
  err: Promise<Socket>;
  bootTimeoutMs: number;
  onGone: () => Promise<void>;
  home: MonocoreHome;
  groupKey?: string;
}

/** Reads the last `bytes` of a file (the console tail for error messages). */
export function fileTail(path: string, bytes = 4096): string {
  try {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const len = Math.min(bytes, size);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

class QemuVm implements QemuVmHandle {
  readonly id: string;
  readonly pid: number;
  readonly started: Promise<void>;
  readonly timings: BootTimings = {};
  readonly consoleLog: string;
  readonly spawned: Promise<void>;

  private readonly watch: ChildProcessWatch;
  private ctlSock?: Socket;
  private isStarted = false;
  private exitCode: number | null = null;
  private exitReported = false;
  private guestError?: string;
  private qemuStderr = '';
  private stopRequested = false;
  private killReason?: 'killed' | 'boot-timeout';
  private ended = false;
  private watchdog?: NodeJS.Timeout;
  private consoleTail = Buffer.alloc(0);
  private consoleDropped = 0;

  constructor(private readonly s: QemuVmInit) {
    this.id = s.spec.id;
    this.pid = s.child.pid ?? -1;
    this.consoleLog = s.consoleLog;
    const child = s.child;
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
      sock.write(s.guestSpec);
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

    this.watchdog = setTimeout(() => {
      if (!this.isStarted && !this.exitReported && !this.ended) {
        this.killReason = 'boot-timeout';
        child.kill('SIGKILL');
      }
    }, s.bootTimeoutMs);

    void (async () => {
      const { code, signal } = await childGone;
      this.ended = true;
      clearTimeout(this.watchdog);
      await Promise.all([outDone, errDone, conDone]);
      for (const srv of s.servers) srv.close();
      this.ctlSock?.destroy();
      await rm(s.runtimeDir, { recursive: true, force: true }).catch(() => {});
      if (watch.pidFile) removePidRecord(watch.pidFile);
      await s.onGone().catch(() => {});
      const exit = this.describeExit(code, signal);
      if (!this.isStarted) {
        watch.rejectStarted(
          new MonocoreError(
            exit.reason === 'boot-timeout' ? 'MC_VM_BOOT_TIMEOUT' : 'MC_VM_START_FAILED',
            `${s.spec.id}: the command did not start (${exit.reason}${exit.exitCode !== null ? `, exit code ${exit.exitCode}` : ''})${exit.detail ? `: ${exit.detail}` : ''}`,
            { id: s.spec.id, exit },
          ),
        );
      }
      watch.resolveExit(exit);
    })();
  }

  private onControl(line: string): void {
    const ev = parseGuestEvent(line);
    if (!ev) return;
    const now = Date.now() - this.s.t0;
    switch (ev.type) {
      case 'boot':
        this.timings.initMs = now;
        this.timings.guestInitUptime = ev.uptime;
        break;
      case 'started':
        this.timings.startedMs = now;
        this.timings.guestStartedUptime = ev.uptime;
        this.isStarted = true;
        clearTimeout(this.watchdog);
        this.watch.resolveStarted();
        break;
      case 'error':
        this.guestError = ev.message;
        break;
      case 'exit':
        this.timings.exitMs = now;
        this.timings.guestExitUptime = ev.uptime;
        this.exitCode = ev.code;
        this.exitReported = true;
        clearTimeout(this.watchdog);
        // init powers off right after; make sure a wedged QEMU cannot linger.
        setTimeout(() => {
          if (!this.ended) this.s.child.kill('SIGKILL');
        }, 5000).unref();
        break;
    }
  }

  private describeExit(code: number | null, signal: NodeJS.Signals | null): VmExit {
    const tail = (): string => this.consoleTail.subarray(-3000).toString('utf8').trim();
    if (this.exitReported) {
      return { exitCode: this.exitCode, reason: this.stopRequested ? 'stopped' : 'exited' };
    }
    if (this.killReason === 'boot-timeout') {
      return {
        exitCode: null,
        reason: 'boot-timeout',
        detail: `no start report within ${this.s.bootTimeoutMs} ms; console tail:\n${tail()}`,
      };
    }
    if (this.killReason === 'killed') {
      return { exitCode: this.isStarted ? 137 : null, reason: 'killed' };
    }
    const why = this.guestError
      ? `guest init: ${this.guestError}`
      : `hypervisor exited (${signal ? `signal ${signal}` : `code ${code}`})${this.qemuStderr.trim() ? `: ${this.qemuStderr.trim()}` : ''}`;
    return { exitCode: null, reason: 'hypervisor-error', detail: `${why}\nconsole tail:\n${tail()}` };
  }

  wait(): Promise<VmExit> {
    return this.watch.exit;
  }

  async stop(options: { timeoutMs?: number } = {}): Promise<VmExit> {
    if (this.ended) return this.watch.exit;
    this.stopRequested = true;
    if (!this.isStarted || !this.ctlSock) return this.kill();
    this.ctlSock.write('signal 15\n');
    const timer = setTimeout(() => void this.kill(), options.timeoutMs ?? 10_000);
    const exit = await this.watch.exit;
    clearTimeout(timer);
    return exit;
  }

  kill(): Promise<VmExit> {
    if (!this.ended && !this.exitReported) {
      this.killReason ??= 'killed';
      this.s.child.kill('SIGKILL');
    } else if (!this.ended) {
      this.s.child.kill('SIGKILL');
    }
    return this.watch.exit;
  }
}

/**
 * File capabilities the unpacker recorded for this image (`<image dir>/ownership.json`,
 * beside the rootfs): QEMU's 9p passes only user.* and ACL xattrs, so the guest
 * init sets them on its overlay. A rootfs without a record has none.
 */
function imageCapabilities(rootfs: string): Array<{ path: string; value: Buffer }> {
  try {
    const rec = JSON.parse(readFileSync(join(dirname(rootfs), OWNERSHIP_FILE), 'utf8')) as OwnershipRecordFile;
    return (rec.capabilities ?? []).map((c) => ({ path: c.path, value: Buffer.from(c.value, 'base64') }));
  } catch {
    return [];
  }
}

/** Why a TCP port cannot be bound on the host (e.g. "already in use"), or undefined. */
async function portProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'EADDRINUSE' ? 'the port is already in use' : (e.code ?? e.message)));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** True when `p` is an existing directory (used by spec validation). */
export function isDirectory(p: string): boolean {
  try {
    return isAbsolute(p) && statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** A random VM-unique suffix (for callers building ids). */
export function randomVmSuffix(): string {
  return randomBytes(4).toString('hex');
}
