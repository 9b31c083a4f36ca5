import { MonocoreError } from '../errors/index.js';
import type { Accel } from './acceleration.js';

/**
 * QEMU's command line as a pure function of a plain description of the VM: no
 * files, sockets or processes are touched here, so every flag can be checked
 * by a unit test (qemu-args.test.ts). What the paths and fds point at is
 * allocated by the attach functions (qemu-devices.ts). Recipe and measurements:
 * docs/VM.md and docs/PLATFORM.md.
 */
export interface QemuMachine {
  accel: Accel;
  /** Under TCG: the translated-code buffer, MiB (QEMU's default is 1 GiB, filled as the guest runs new code). */
  tcgCodeMib?: number;
  cpus: number;
  ramMib: number;
  /**
   * Uncompressed ELF kernel (vmlinux) and the initramfs, as paths QEMU opens itself
   * (the caller passes `/proc/self/fd/N` of files it opened: see QemuBackend).
   */
  kernel: string;
  initrd: string;
  /** Host TSC rate in kHz for tsc_early_khz, when /proc/cpuinfo gives one. */
  tscKhz?: number;
  /** Unix socket (we listen, QEMU connects) behind the serial console ttyS0. */
  consoleSocket: string;
  /** The image's read-only filesystem (erofs): the overlay's lower layer; absent for the boot probe. */
  image?: QemuFile;
  /** The per-service writable layer (raw ext4 file), absent for the boot probe. */
  disk?: QemuFile;
  /** The guest agent's bulk lane (raw file, docs/AGENT.md), absent for the boot probe. */
  lane?: QemuFile;
  /** virtio-serial ports, in order: chardev id, the name the guest finds the port by, our socket. */
  serialPorts: ReadonlyArray<{ id: string; name: string; socket: string }>;
  /** Host directories shared over 9p; the guest mounts them by tag. */
  volumes: ReadonlyArray<{ tag: string; host: string; readOnly: boolean }>;
  nics: readonly QemuNic[];
  /** Unix socket (we listen, QEMU connects) of the VM's QMP monitor: snapshots, pause, fork (docs/SNAPSHOTS.md). */
  qmpSocket?: string;
  /** Restore: QEMU loads the saved state from this inherited fd and stays paused (-S) until QMP `cont`. */
  incomingFd?: number;
  /**
   * Leave guest RAM mergeable by KSM (QEMU's default mem-merge=on). Off unless the operator
   * opts in (MONOCORE_MEM_MERGE=1): merged pages of mutually untrusting guests are a side
   * channel (docs/THREATS.md "Memory sharing").
   */
  memMerge?: boolean;
}

/**
 * A file QEMU gets as an inherited fd, opened by us before QEMU drops its privileges, so
 * QEMU needs no permission on the file or its directories (docs/THREATS.md "Guests").
 */
export interface QemuFile {
  /**
   * The fd numbers in QEMU's process, one per access mode QEMU may ask for (an fdset hands out
   * the one whose mode matches): a writable drive needs a read-only fd too, since QEMU opens
   * it read-only first.
   */
  fds: readonly number[];
  /** The file's path: only shown in QEMU's command line (fdset `opaque`), for people and rootfs-in-use.ts. */
  path: string;
}

/**
 * Block devices and their fdsets, in the order QEMU creates them (docs/VM.md "Devices"; a
 * snapshot restores only into the same device layout). The guest finds each by its serial.
 */
export const QEMU_BLOCK_DEVICES = {
  image: { id: 'image', serial: 'image', fdset: 1 },
  upper: { id: 'upper', serial: 'upper', fdset: 2 },
  /** The guest agent's bulk lane (docs/AGENT.md); the agent looks for this serial. */
  lane: { id: 'lane', serial: 'monocore-lane', fdset: 3 },
} as const;

/** One virtio-net device, by what it connects to (docs/NETWORK.md). */
export type QemuNic =
  /** The group's L2 segment: a socket to the in-process switch, inherited as fd `fd`. */
  | { kind: 'group'; fd: number; mac: string }
  /** Outbound access through passt: a socket inherited as fd `fd`. */
  | { kind: 'egress'; fd: number; mac: string }
  /** Host ports forwarded into the guest through slirp. */
  | { kind: 'port-forward'; mac: string; forwards: ReadonlyArray<{ bindAddress: string; host: number; guest: number }> };

/**
 * Linux capabilities QEMU keeps (setpriv --bounding-set, and as ambient ones when it runs as a
 * uid of its own). Without volumes: none — every file it needs is an fd we opened. With
 * volumes: what a mapped-xattr 9p share of a host directory needs, since the files in it
 * belong to other uids (the host's, earlier VMs'): dac_override to read and write them and
 * their directories, fowner to set their xattrs and times (docs/THREATS.md "Guests").
 */
export function qemuCaps(hasVolumes: boolean): string {
  return hasVolumes ? '-all,+dac_override,+fowner' : '-all';
}

/**
 * The CPU model under TCG: every feature of `max` except ERMS. With ERMS the guest kernel copies
 * and clears memory with `rep movsb`/`rep stosb`, which TCG runs one byte per loop iteration;
 * without it the kernel picks `rep movsq` and glibc its vector loops. Measured in a 512 MiB guest
 * (docs/PLATFORM.md): reading 64 MiB from the page cache 0.42 s → 0.08 s, writing it to tmpfs
 * 1.1 s → 0.4 s, and boots get faster. (`-cpu host` fails on this host's KVM: "failed to set
 * MSR 0x10a".)
 */
export const TCG_CPU = 'max,erms=off';

/** MONOCORE_MEM_MERGE: `1` lets KSM merge guest RAM across VMs; unset, empty or `0` keeps it off. */
export function memMergeFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.MONOCORE_MEM_MERGE;
  if (v === undefined || v === '' || v === '0') return false;
  if (v === '1') return true;
  throw new MonocoreError('MC_USAGE', `MONOCORE_MEM_MERGE must be 1 (let KSM merge guest memory across VMs) or 0, got ${JSON.stringify(v)}`, { value: v });
}

/** The guest kernel's command line. */
export function kernelCmdline(tscKhz: number | undefined): string {
  return [
    'console=ttyS0', // kernel messages to the serial port = console.log, never to the service's stdout
    'panic=-1', // a guest kernel panic ends the VM at once (with -no-reboot) instead of hanging
    'reboot=t', // reboot via triple fault: with -no-reboot, QEMU exits
    'quiet',
    'no_timer_check', // skip the IO-APIC timer check that hangs ~1 in 3 TCG boots (PLATFORM.md)
    ...(tscKhz ? [`tsc_early_khz=${tscKhz}`] : []), // skip TSC calibration: without it 1 boot in 4-8 hangs under TCG
    'rdinit=/init',
  ].join(' ');
}

/** qemu-system-x86_64's arguments (without the binary) for one `-M microvm` VM. */
export function qemuArgs(m: QemuMachine): string[] {
  const args = [
    // microvm: no PCI/ACPI tables to probe; x-option-roms=off skips the option ROM scan;
    // rtc=on and isa-serial=on: the RTC helped avoid timer hangs and ttyS0 is our console.
    // mem-merge=off: guest RAM is not madvised MERGEABLE, so KSM never merges one guest's pages
    // with another's (a page-dedup timing side channel; docs/THREATS.md "Memory sharing").
    '-M', `microvm,x-option-roms=off,rtc=on,isa-serial=on${m.memMerge ? '' : ',mem-merge=off'}`,
    // TCG: thread=single was the verified-stable mode here; KVM/HVF when usable.
    // tb-size caps the translated-code buffer: QEMU's 1 GiB default grows with every guest, and an
    // idle one already holds tens of MiB of it (docs/PLATFORM.md "Host memory per VM under TCG").
    '-accel', m.accel === 'tcg' ? `tcg,thread=single${m.tcgCodeMib ? `,tb-size=${m.tcgCodeMib}` : ''}` : m.accel,
    '-cpu', m.accel === 'tcg' ? TCG_CPU : 'host',
    '-m', String(m.ramMib),
    '-smp', String(m.cpus),
    '-nodefaults', '-no-user-config', // no default devices, no /etc/qemu config
    '-display', 'none', '-monitor', 'none', // no stdio muxing: QEMU's own stderr stays for errors
    '-no-reboot', // a guest reboot (or panic) ends the process
    // seccomp filter on QEMU itself: no obsolete syscalls, no setuid/setgid, no fork/exec,
    // no scheduler/affinity games — what a guest that escaped into QEMU could use next.
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    // The console goes through us (not `-serial file:`) so a guest flooding it cannot fill the
    // host disk: console.log is capped (consoleLimitBytes), the last 64 KiB are kept in memory.
    '-chardev', `socket,id=con,path=${m.consoleSocket}`,
    '-serial', 'chardev:con',
    '-kernel', m.kernel, // uncompressed ELF via PVH: bzImage decompression crawls under TCG
    '-initrd', m.initrd,
    '-append', kernelCmdline(m.tscKhz),
    // Block devices first, in a fixed order (QEMU_BLOCK_DEVICES; snapshots depend on it).
    ...blockArgs(m),
    // control / stdout / stderr (…): virtio-serial ports to our unix sockets (kept apart from the
    // console). Port 0 of the bus is reserved for a console, so max_ports counts one more than
    // the ports we add (QEMU refuses a 4th port with max_ports=4).
    '-device', `virtio-serial-device,max_ports=${m.serialPorts.length + 1}`,
  ];
  for (const p of m.serialPorts) {
    args.push('-chardev', `socket,id=${p.id},path=${p.socket}`);
    args.push('-device', `virtserialport,chardev=${p.id},name=${p.name}`);
  }
  for (const v of m.volumes) {
    // Volumes: mapped-xattr, so guest-chosen owners/modes (setuid, devices) are stored as
    // user.virtfs.* xattrs and the host only ever sees plain 0600 files (docs/THREATS.md).
    args.push('-fsdev', `local,id=${v.tag},path=${qemuOptValue(v.host)},security_model=mapped-xattr${v.readOnly ? ',readonly=on' : ''}`);
    args.push('-device', `virtio-9p-device,fsdev=${v.tag},mount_tag=${v.tag}`);
  }
  for (const nic of m.nics) args.push(...nicArgs(nic));
  // Not devices: neither is part of what a saved VM must match (machineShape() leaves them out).
  if (m.qmpSocket) args.push('-chardev', `socket,id=qmp,path=${m.qmpSocket}`, '-mon', 'chardev=qmp,mode=control');
  if (m.incomingFd !== undefined) args.push('-S', '-incoming', `fd:${m.incomingFd}`);
  return args;
}

/**
 * QEMU's argv with what differs between two starts of the same VM shape normalised away
 * (inherited fd numbers, socket and file paths, the QMP monitor, the incoming state, whether
 * the host may merge its RAM): two VMs whose normalised argv is equal have the same machine
 * and devices, in the same order, so one's saved state restores into the other. Hashed into
 * a template's key.
 */
export function machineShape(m: QemuMachine): string[] {
  // mem-merge is the host's madvise on guest RAM, not in the migration stream: either side restores
  // the other's state. Rendered as QEMU's default (no flag), as before mem-merge=off existed.
  const { qmpSocket: _q, incomingFd: _i, memMerge: _m, ...rest } = m;
  return qemuArgs({ ...rest, memMerge: true }).map((a) =>
    a
      .replace(/\/proc\/self\/fd\/\d+/g, '/proc/self/fd/N')
      .replace(/\bfd=\d+/g, 'fd=N')
      // A group member's MAC follows its address; a VM restored from another member's state is
      // given its own by REFRESH (snapshot/vm-templates.ts), so the machine is the same.
      .replace(/\b(netdev=grp,mac=)[0-9a-fA-F:]+/g, '$1M')
      .replace(/\bopaque=(?:[^,]|,,)*/g, 'opaque=')
      .replace(/\bpath=(?:[^,]|,,)*/g, 'path='),
  );
}

function blockArgs(m: QemuMachine): string[] {
  const args: string[] = [];
  const drive = (dev: (typeof QEMU_BLOCK_DEVICES)[keyof typeof QEMU_BLOCK_DEVICES], file: QemuFile, opts = ''): void => {
    // -add-fd: QEMU takes the fd we opened (an fdset dups it with the access mode the drive asks
    // for), so it needs no access to the path; opaque shows which file it is in `ps`.
    for (const fd of file.fds) args.push('-add-fd', `fd=${fd},set=${dev.fdset},opaque=${qemuOptValue(file.path)}`);
    args.push('-drive', `file=/dev/fdset/${dev.fdset},format=raw,if=none,id=${dev.id}${opts ? `,${opts}` : ''}`);
    args.push('-device', `virtio-blk-device,drive=${dev.id},serial=${dev.serial}`);
  };
  // The image: read-only at the device (the guest kernel cannot write it even as root), one
  // file shared by every VM of the image.
  if (m.image) drive(QEMU_BLOCK_DEVICES.image, m.image, 'read-only=on');
  // Per-service writable layer: sparse raw ext4 file; cache=unsafe is not used so a host
  // crash cannot lose what the guest fsync()ed.
  // No image locking on the VM's own writable files (nobody else opens them): when a VM runs
  // again after its state was saved (`cont`), QEMU re-takes its locks and failed to get the
  // "write" lock of its own fdset files.
  if (m.disk) drive(QEMU_BLOCK_DEVICES.upper, m.disk, 'discard=unmap,file.locking=off');
  // The agent's bulk lane: a scratch file both ends read and write (docs/AGENT.md "Bulk lane").
  if (m.lane) drive(QEMU_BLOCK_DEVICES.lane, m.lane, 'file.locking=off');
  return args;
}

/** A value inside a QEMU -option list: a comma is written twice. */
export function qemuOptValue(v: string): string {
  return v.replace(/,/g, ',,');
}

function nicArgs(nic: QemuNic): string[] {
  switch (nic.kind) {
    case 'group':
      // The group segment: a connected socket to our in-process switch, passed as an inherited
      // fd. No host interface is attached to the segment, so nothing but the group's VMs is on it.
      return ['-netdev', `socket,id=grp,fd=${nic.fd}`, '-device', `virtio-net-device,netdev=grp,mac=${nic.mac}`];
    case 'egress':
      // Outbound access: a NIC to passt in a namespace of its own, whose way out
      // is filtered on the host so that it never leads back to it (egress-network.ts).
      return ['-netdev', `socket,id=egr,fd=${nic.fd}`, '-device', `virtio-net-device,netdev=egr,mac=${nic.mac}`];
    case 'port-forward': {
      // Port forwarding through slirp with restrict=on: hostfwd still works,
      // but the guest cannot open connections to the host (10.0.2.2 is the
      // host's loopback!) or anywhere else, and gets no DNS. A separate NIC,
      // so the group segment stays a pure L2 island.
      const fwds = nic.forwards.map((f) => `hostfwd=tcp:${f.bindAddress}:${f.host}-:${f.guest}`).join(',');
      return ['-netdev', `user,id=pf,restrict=on,net=10.0.2.0/24,${fwds}`, '-device', `virtio-net-device,netdev=pf,mac=${nic.mac}`];
    }
  }
}

/** How QEMU is launched: the optional prefix, then setpriv, then QEMU with `args`. */
export interface QemuLaunch {
  /** e.g. ['ip', 'netns', 'exec', 'ns1']; must exec (not fork) its argument. */
  prefix?: readonly string[];
  /** The QEMU binary. */
  qemu: string;
  /** The uid (and gid) QEMU runs as; undefined = the caller's own (when not root). */
  uid?: number;
  /** Supplementary groups QEMU keeps with `uid` (e.g. /dev/kvm's group); none by default. */
  groups?: readonly number[];
  /** qemuCaps(...): the capabilities it keeps. */
  caps: string;
  args: readonly string[];
}

/** The whole argv to spawn: `[...prefix, 'setpriv', …, '--', qemu, ...args]`. */
export function launchArgv(l: QemuLaunch): string[] {
  // setpriv: --pdeathsig KILL kills QEMU when its supervising process dies (no orphans);
  // --bounding-set keeps at most `caps`; --no-new-privs.
  const groups = l.groups && l.groups.length > 0 ? ['--groups', l.groups.join(',')] : ['--clear-groups'];
  return [
    ...(l.prefix ?? []),
    'setpriv', '--pdeathsig', 'KILL', '--no-new-privs', '--bounding-set', l.caps,
    // A uid of its own, keeping only those capabilities as ambient ones (see the caller).
    ...(l.uid !== undefined
      ? ['--reuid', String(l.uid), '--regid', String(l.uid), ...groups, '--inh-caps', l.caps, '--ambient-caps', l.caps]
      : []),
    '--', l.qemu, ...l.args,
  ];
}
