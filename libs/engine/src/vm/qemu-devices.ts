import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chown, mkdtemp, open, rename, rm, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { BLOCK_IMAGE_FSTYPE, buildBlockImage, ensureImageBlock, storeImageOf } from '../rootfs/image-block.js';
import { OWNERSHIP_FILE, type OwnershipRecordFile } from '../rootfs/ownership-record.js';
import { LANE_FILE_BYTES } from './agent/agent-lane.js';
import type { CleanupStack } from './cleanup-stack.js';
import { EgressAllowList } from './egress-allow-list.js';
import { EgressNetwork } from './egress-network.js';
import { groupMac } from './group-switch.js';
import type { GroupSwitches } from './group-switches.js';
import type { GuestSpec } from './guest-protocol.js';
import { HostSlots } from './host-slots.js';
import type { QemuFile, QemuNic } from './qemu-args.js';
import type { VmNetwork, VmSpec } from './vm-spec.js';

/*
 * One attach function per device kind of a QEMU VM, as in Firecracker's
 * builder.rs: each allocates what its device needs on the host, pushes the undo
 * onto the VM's CleanupStack right after the allocation succeeds, and returns
 * what it allocated with its part of the machine description (qemu-args.ts)
 * and of the guest spec (guest-protocol.ts). QemuBackend.start orchestrates.
 */

const run = promisify(execFile);

const PORT_FWD_MAC = '52:55:0a:00:02:0f';
const EGRESS_MAC = '52:56:64:7f:00:02';
/** QEMU runs as VM_UID_BASE + slot (root only): high, unnamed uids no account uses. */
export const VM_UID_BASE = 0x70000000;
const vmUids = new HostSlots('/run/monocore/vm-uids', 65536, 'per-VM uids');

type GuestNic = GuestSpec['nics'][number];
/** Passes a socket or an open file to QEMU as an inherited fd; returns the fd number QEMU sees. */
export type InheritFd = (io: Socket | number) => number;

/**
 * Opens `path` for QEMU (we open it, QEMU inherits the fd: it needs no access to the
 * file or its directories). The fd is closed once the VM has ended.
 */
async function inheritFile(path: string, modes: ReadonlyArray<'r' | 'r+'>, inherit: InheritFd, cleanup: CleanupStack): Promise<QemuFile> {
  const fds: number[] = [];
  for (const mode of modes) {
    const fh = await open(path, mode);
    cleanup.push(() => fh.close());
    fds.push(inherit(fh.fd));
  }
  return { fds, path };
}

/**
 * The kernel and the initramfs, as `/proc/self/fd/N` of fds we opened. QEMU's loader
 * opens a path (no fdset there); through its own fd table it reaches the file without
 * search permission on the directories above (MONOCORE_HOME is often under a 0700
 * home), but reopening still checks the file's own mode: both must be readable by
 * others (the initramfs is written 0644; guest-kernel.sh's vmlinux is 0644).
 */
export async function attachBootFiles(kernel: string, initrd: string, inherit: InheritFd, cleanup: CleanupStack): Promise<{ kernel: string; initrd: string }> {
  const reopenable = async (path: string): Promise<string> => {
    const f = await inheritFile(path, ['r'], inherit, cleanup);
    if (process.getuid?.() === 0 && (statSync(path).mode & 0o004) === 0) {
      throw new MonocoreError('MC_VM_START_FAILED', `${path} is not readable by other users (mode ${(statSync(path).mode & 0o777).toString(8)}): QEMU runs as a uid of its own and reopens it (chmod o+r)`, { path });
    }
    return `/proc/self/fd/${f.fds[0]!}`;
  };
  return { kernel: await reopenable(kernel), initrd: await reopenable(initrd) };
}

/**
 * The image's root filesystem as a read-only block device (erofs), and the file
 * capabilities the guest init must still set itself. For an image of this host's
 * store the block image is built once and shared by every VM of the image
 * (rootfs/image-block.ts); any other directory (MicroVm.builder().rootPath(dir))
 * gets one built for this VM in its state dir, removed when the VM ends. Absent for
 * the boot probe (it mounts no root).
 */
export async function attachImageBlock(
  spec: VmSpec,
  home: MonocoreHome,
  inherit: InheritFd,
  cleanup: CleanupStack,
): Promise<{ file: QemuFile; fsType: typeof BLOCK_IMAGE_FSTYPE; capabilities: NonNullable<GuestSpec['capabilities']>; imageId?: string }> {
  const record = ownershipRecord(spec.rootfs);
  const imageId = await storeImageOf(home, spec.rootfs);
  let path: string;
  if (imageId) {
    path = (await ensureImageBlock({ home, imageId })).path;
  } else {
    path = join(spec.stateDir, 'rootfs.erofs');
    const tmp = `${path}.${process.pid}.tmp`;
    cleanup.push(() => rm(path, { force: true }));
    try {
      await buildBlockImage(spec.rootfs, tmp, { allRoot: record?.ownershipRecorded === true });
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }
  const file = await inheritFile(path, ['r'], inherit, cleanup);
  return { file, fsType: BLOCK_IMAGE_FSTYPE, capabilities: recordedCapabilities(record), ...(imageId ? { imageId } : {}) };
}

/** `<image dir>/ownership.json` beside the rootfs (the unpacker's record), if any. */
function ownershipRecord(rootfs: string): OwnershipRecordFile | undefined {
  try {
    return JSON.parse(readFileSync(join(dirname(rootfs), OWNERSHIP_FILE), 'utf8')) as OwnershipRecordFile;
  } catch {
    return undefined;
  }
}

/**
 * File capabilities the block image cannot carry: when the unpacker was not root
 * (ownershipRecorded), the host files have no security.capability xattr (setting it
 * needs CAP_SETFCAP), so mkfs.erofs had none to copy and the guest init sets them on
 * its overlay. Unpacked as root, they are on the host files and in the block image.
 */
function recordedCapabilities(rec: OwnershipRecordFile | undefined): Array<{ path: string; value: Buffer }> {
  if (rec?.ownershipRecorded !== true) return [];
  return (rec.capabilities ?? []).map((c) => ({ path: c.path, value: Buffer.from(c.value, 'base64') }));
}

/** Where a service's writable disk lives. */
export function writableDiskPath(stateDir: string): string {
  return join(stateDir, 'upper.ext4');
}

/**
 * The per-service writable layer: a sparse ext4 file created once; later starts
 * reuse it, so its writes persist across restarts. Nothing is pushed to undo:
 * the disk lives as long as the service's state dir, not as long as the VM.
 */
export async function attachWritableDisk(stateDir: string, sizeMib: number, inherit: InheritFd, cleanup: CleanupStack, seed?: string): Promise<QemuFile> {
  const disk = writableDiskPath(stateDir);
  // A restore: the disk as it was when the template was saved (the guest's memory has it mounted).
  if (seed) await copySparse(seed, disk);
  else if (!existsSync(disk)) await createWritableDisk(disk, sizeMib);
  // QEMU opens a writable drive read-only first, then read-write: an fd for each.
  return inheritFile(disk, ['r', 'r+'], inherit, cleanup);
}

/**
 * Copies a sparse disk file keeping its holes (a 4 GiB ext4 disk with a few MB written copies
 * those MB), sharing blocks where the filesystem can (reflink). Written to a temp name first.
 */
export async function copySparse(from: string, to: string): Promise<void> {
  const tmp = `${to}.${process.pid}.tmp`;
  try {
    await run('cp', ['--sparse=always', '--reflink=auto', '--', from, tmp]);
    await rename(tmp, to);
  } catch (e) {
    await rm(tmp, { force: true });
    const stderr = (e as { stderr?: string }).stderr;
    throw new MonocoreError('MC_VM_DISK_PREPARE_FAILED', `cannot copy ${from} to ${to}: ${stderr?.trim() || (e as Error).message}`, { path: to }, { cause: e });
  }
}

async function createWritableDisk(disk: string, sizeMib: number): Promise<void> {
  const tmp = `${disk}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, '');
    await truncate(tmp, sizeMib * 1024 * 1024);
    // -m 0: no root reserve; lazy init keeps mkfs O(1) in disk size.
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', tmp]);
    await rename(tmp, disk);
  } catch (e) {
    await rm(tmp, { force: true });
    const stderr = (e as { stderr?: string }).stderr;
    throw new MonocoreError('MC_VM_DISK_PREPARE_FAILED', `cannot create ${disk}: ${stderr?.trim() || (e as Error).message}`, { path: disk }, { cause: e });
  }
}

/** A unix socket we listen on before QEMU starts; QEMU connects as a client, so no byte is lost. */
export interface HostSocket {
  path: string;
  /** QEMU's connection (the guest's end of the port). */
  conn: Promise<Socket>;
}

/** The virtio-serial ports, in the order QEMU adds them: chardev id and the name the guest init opens. */
const VIRTIO_PORTS = {
  control: { id: 'ctl', name: 'monocore.control' },
  stdout: { id: 'out', name: 'monocore.stdout' },
  stderr: { id: 'err', name: 'monocore.stderr' },
  /** The guest agent's port (docs/AGENT.md). */
  agent: { id: 'agt', name: 'monocore.agent' },
} as const;
export type VirtioPortName = keyof typeof VIRTIO_PORTS;

export interface SerialPorts {
  /** Private directory of the VM's sockets; removed at the VM's end. */
  runtimeDir: string;
  /** The serial console (ttyS0). */
  console: HostSocket;
  /** QEMU's QMP monitor (not a guest device): snapshots, pause, fork. */
  qmp: HostSocket;
  /** The virtio-serial ports by role. */
  ports: Record<VirtioPortName, HostSocket>;
  /** The ports as qemuArgs takes them. */
  qemu: Array<{ id: string; name: string; socket: string }>;
}

/**
 * The console and the virtio-serial ports: one listening unix socket each. With
 * `uid` (QEMU's own), the private dir and its sockets belong to that uid: QEMU
 * connects to them with no capability to override permissions.
 */
export async function attachSerialPorts(cleanup: CleanupStack, uid?: number): Promise<SerialPorts> {
  // Unix socket paths are limited to 108 bytes: keep them in a short private dir.
  const runtimeDir = await mkdtemp(join(tmpdir(), 'mcvm-'));
  cleanup.push(() => rm(runtimeDir, { recursive: true, force: true }));
  if (uid !== undefined) await chown(runtimeDir, uid, uid);
  const listen = async (name: string): Promise<HostSocket> => {
    const path = join(runtimeDir, `${name}.sock`);
    const server = createServer();
    cleanup.push(() => server.close());
    const conn = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    // connect(2) needs write permission on the socket file.
    if (uid !== undefined) await chown(path, uid, uid);
    return { path, conn };
  };
  const con = await listen('console');
  const qmp = await listen('qmp');
  const ports = {} as Record<VirtioPortName, HostSocket>;
  const qemu: SerialPorts['qemu'] = [];
  for (const [role, port] of Object.entries(VIRTIO_PORTS) as Array<[VirtioPortName, (typeof VIRTIO_PORTS)[VirtioPortName]]>) {
    ports[role] = await listen(role);
    qemu.push({ id: port.id, name: port.name, socket: ports[role].path });
  }
  return { runtimeDir, console: con, qmp, ports, qemu };
}

/**
 * The guest agent's bulk lane (docs/AGENT.md "Bulk lane"): a sparse file in the VM's private
 * runtime dir (removed with it), seen by the guest as a virtio-blk disk with serial
 * `monocore-lane`. File data moves through it instead of the agent's serial port.
 */
export async function attachAgentLane(runtimeDir: string, inherit: InheritFd, cleanup: CleanupStack): Promise<QemuFile & { host: FileHandle }> {
  const path = join(runtimeDir, 'lane.img');
  await writeFile(path, '', { mode: 0o600, flag: 'wx' });
  await truncate(path, LANE_FILE_BYTES);
  // The host's own handle is opened now, before QEMU runs: the runtime dir belongs to QEMU's uid,
  // so a QEMU a guest took over could swap `lane.img` for a symlink to any host file by the time
  // the agent answers. The worker never opens the path again.
  const host = await open(path, 'r+');
  cleanup.push(() => host.close());
  // Passed as fds like the other disks: QEMU (no capability) cannot open our 0600 file by path.
  return { ...(await inheritFile(path, ['r', 'r+'], inherit, cleanup)), host };
}

type GroupNetwork = Extract<VmNetwork, { mode: 'group' }>;

/** The group's segment: a port on the group's in-process switch, passed to QEMU as an fd. */
export async function attachGroupNic(
  net: GroupNetwork,
  hostname: string,
  switches: GroupSwitches,
  inherit: InheritFd,
  cleanup: CleanupStack,
): Promise<{ nic: QemuNic; guest: GuestNic; hosts: string[] }> {
  const sw = await switches.join(net.group);
  cleanup.push(() => switches.leave(net.group));
  const mac = groupMac(net.address);
  const sock = await sw.connectPort(mac);
  cleanup.push(() => sock.destroy());
  const hosts = [`${net.address.split('/')[0]}\t${hostname}`];
  for (const [name, addr] of Object.entries(net.peers)) hosts.push(`${addr.split('/')[0]}\t${name}`);
  return { nic: { kind: 'group', fd: inherit(sock), mac }, guest: { mac, cidr: net.address }, hosts };
}

/** Outbound access: passt in a network namespace of its own (egress-network.ts), limited to `allow` when given. */
export async function attachEgressNic(
  id: string,
  opts: { allow?: readonly string[]; stateDir: string },
  inherit: InheritFd,
  cleanup: CleanupStack,
): Promise<{ nic: QemuNic; guest: GuestNic; dns: string[] }> {
  const allow = opts.allow ? EgressAllowList.parse(opts.allow, 'network.allow') : undefined;
  const egress = await EgressNetwork.open(id, { allow, logPath: allow ? join(opts.stateDir, 'egress-dns.log') : undefined });
  cleanup.push(() => egress.close());
  return {
    nic: { kind: 'egress', fd: inherit(egress.socket), mac: EGRESS_MAC },
    guest: { mac: EGRESS_MAC, cidr: egress.guest.cidr, gateway: egress.guest.gateway },
    dns: egress.guest.dns,
  };
}

/** Host ports forwarded into the guest: slirp inside QEMU, nothing allocated here. */
export function attachPortForwardNic(ports: VmSpec['ports']): { nic: QemuNic; guest: GuestNic } {
  const forwards = ports.map((p) => ({ bindAddress: p.bindAddress ?? '127.0.0.1', host: p.host, guest: p.guest }));
  return { nic: { kind: 'port-forward', mac: PORT_FWD_MAC, forwards }, guest: { mac: PORT_FWD_MAC, cidr: '10.0.2.15/24' } };
}

/** The NICs the spec asks for, in QEMU's order: group segment, egress, port forwarding. */
export async function attachNics(
  spec: VmSpec,
  switches: GroupSwitches,
  inherit: InheritFd,
  cleanup: CleanupStack,
): Promise<{ qemu: QemuNic[]; guest: GuestNic[]; hosts: string[]; dns?: string[] }> {
  const out: { qemu: QemuNic[]; guest: GuestNic[]; hosts: string[]; dns?: string[] } = { qemu: [], guest: [], hosts: [] };
  const add = (n: { nic: QemuNic; guest: GuestNic }): void => {
    out.qemu.push(n.nic);
    out.guest.push(n.guest);
  };
  if (spec.network.mode === 'group') {
    const group = await attachGroupNic(spec.network, spec.hostname ?? spec.id, switches, inherit, cleanup);
    add(group);
    out.hosts.push(...group.hosts);
    if (!spec.network.localOnly) {
      const egress = await attachEgressNic(spec.id, { allow: spec.network.allow, stateDir: spec.stateDir }, inherit, cleanup);
      add(egress);
      out.dns = egress.dns;
    }
  }
  if (spec.ports.length > 0) add(attachPortForwardNic(spec.ports));
  return out;
}

/**
 * A taken host port would only surface as a QEMU start error: say which one up
 * front, naming the field. Checked before anything is allocated.
 */
export async function checkForwardedPorts(spec: VmSpec): Promise<void> {
  for (const [i, p] of spec.ports.entries()) {
    const addr = p.bindAddress ?? '127.0.0.1';
    const problem = await portProblem(addr, p.host);
    if (problem) {
      throw new MonocoreError('MC_VM_START_FAILED', `vm ${JSON.stringify(spec.id)}: ports[${i}]: cannot forward ${addr}:${p.host}: ${problem}`, { id: spec.id, field: `ports[${i}].host` });
    }
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

/** Host directories shared over 9p, tagged vol0, vol1, … in spec order. */
export function attachVolumes(volumes: VmSpec['volumes']): {
  qemu: Array<{ tag: string; host: string; readOnly: boolean }>;
  guest: GuestSpec['volumes'];
} {
  const tagged = volumes.map((v, i) => ({ tag: `vol${i}`, host: v.host, guest: v.guest, readOnly: v.readOnly ?? false }));
  return {
    qemu: tagged.map(({ tag, host, readOnly }) => ({ tag, host, readOnly })),
    guest: tagged.map(({ tag, guest, readOnly }) => ({ tag, guest, readOnly })),
  };
}

/**
 * As root, each VM's QEMU runs as a uid of its own (uidBase + a host-wide slot, no
 * passwd entry), keeping only the capabilities it needs as ambient ones: after an
 * escape it cannot signal or ptrace root's processes or other VMs, nor make a file
 * setuid-root (docs/THREATS.md). Undefined when not root (QEMU keeps our uid). The
 * slot is released by the VM's cleanup, which runs only once QEMU is gone: no two
 * live VMs share a uid.
 */
export async function attachVmUid(uidBase: number, cleanup: CleanupStack): Promise<number | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { slot, lock } = await vmUids.acquire();
  cleanup.push(() => lock.release());
  return uidBase + slot;
}

/**
 * Supplementary groups QEMU keeps when it runs as a uid of its own: /dev/kvm's group
 * under KVM (QEMU opens /dev/kvm itself and holds no capability to override its
 * 0660 root:kvm mode); none otherwise.
 */
export function accelGroups(accel: string): number[] {
  if (accel !== 'kvm') return [];
  try {
    return [statSync('/dev/kvm').gid];
  } catch {
    return [];
  }
}
