import type { RlimitName } from './vm-spec.js';

/**
 * The host side of the guest init protocol (libs/native/guest-init/init.c,
 * docs/VM.md). The spec travels as NUL-terminated `key=value` records, so any
 * byte but NUL survives (spaces, quotes, newlines, empty strings, UTF-8) —
 * exactly what execve() itself can carry.
 */
export interface GuestSpec {
  argv: string[];
  env: string[];
  workdir: string;
  /** OCI User string ("uid:gid", "name", ...); omitted or "" = root. */
  user?: string;
  hostname: string;
  /** Whether the per-service ext4 disk (virtio-blk serial "upper") holds the writable layer; else a tmpfs. */
  disk: boolean;
  /** Filesystem type of the image's read-only device (virtio-blk serial "image"); absent only for the probe. */
  image?: 'erofs' | 'ext4';
  volumes: Array<{ tag: string; guest: string; readOnly: boolean }>;
  nics: Array<{ mac: string; cidr: string; gateway?: string }>;
  /** Extra /etc/hosts lines ("<ip> <name>"). */
  hosts: string[];
  /** Resolvers for /etc/resolv.conf (only with outbound access; else the file is left as the image has it). */
  dns?: string[];
  /** File capabilities to set on the guest's root: those the block image could not carry (an image unpacked by a non-root user). */
  capabilities?: Array<{ path: string; value: Buffer }>;
  /** Linux RLIMIT_* numbers with soft/hard values (-1 = unlimited). */
  rlimits?: Array<{ resource: number; soft: number; hard: number }>;
  /** Boot probe: init reports "exit 0" right after reading the spec. */
  probe?: boolean;
  /** Start the guest agent on the "monocore.agent" port (docs/AGENT.md). */
  agent?: boolean;
  /** No command (argv empty): init runs only the agent until "signal 15". */
  sandbox?: boolean;
  /** The writable layer is deleted when the VM ends: init does not flush it after the command. */
  discardDisk?: boolean;
}

/** Linux RLIMIT_* numbers (asm-generic/resource.h; x86_64 uses the generic values). */
export const RLIMIT_NUMBERS: Record<RlimitName, number> = {
  cpu: 0, fsize: 1, data: 2, stack: 3, core: 4, rss: 5, nproc: 6, nofile: 7,
  memlock: 8, as: 9, locks: 10, sigpending: 11, msgqueue: 12, nice: 13, rtprio: 14, rttime: 15,
};

/** NUL-terminated `key=value` records; `body()` is their bytes. A NUL inside a value throws, naming `what` and the key. */
function nulRecords(what: string): { add(key: string, value: string): void; body(): Buffer } {
  const records: string[] = [];
  return {
    add(key, value) {
      if (value.includes('\0')) throw new Error(`${what} ${key} contains a NUL byte`);
      records.push(`${key}=${value}\0`);
    },
    body: () => Buffer.from(records.join(''), 'utf8'),
  };
}

export function encodeGuestSpec(spec: GuestSpec): Buffer {
  const { add, body: records } = nulRecords('guest spec');
  if (spec.probe) add('probe', '1');
  if (spec.sandbox) add('sandbox', '1');
  if (spec.agent) add('agent', '1');
  for (const a of spec.argv) add('arg', a);
  for (const e of spec.env) add('env', e);
  add('workdir', spec.workdir);
  if (spec.user !== undefined && spec.user !== '') add('user', spec.user);
  if (spec.discardDisk) add('discard', '1');
  add('hostname', spec.hostname);
  add('disk', spec.disk ? '1' : '0');
  if (spec.image) add('image', spec.image);
  for (const v of spec.volumes) add('vol', `${v.tag} ${v.readOnly ? 'ro' : 'rw'} ${v.guest}`);
  for (const n of spec.nics) add('nic', `${n.mac} ${n.cidr} ${n.gateway ?? '-'}`);
  for (const h of spec.hosts) add('host', h);
  for (const d of spec.dns ?? []) add('dns', d);
  for (const c of spec.capabilities ?? []) add('cap', `${c.value.toString('hex')} ${c.path}`);
  for (const r of spec.rlimits ?? []) add('rlimit', `${r.resource} ${r.soft} ${r.hard}`);
  const body = records();
  return Buffer.concat([Buffer.from(`MCSPEC1 ${body.length}\n`, 'ascii'), body]);
}

/**
 * The command of a VM started from a template (docs/SNAPSHOTS.md "Commands from templates"):
 * the template booted without one, so once REFRESH gave the guest its identity the host sends
 * init `main <length>\n` and these records on the control port, and init runs the command as if
 * the boot spec had held it. Only what a template leaves out travels: argv, env, workdir, user,
 * and whether the writable layer is discarded at the end.
 */
export function encodeMainCommand(spec: Pick<GuestSpec, 'argv' | 'env' | 'workdir' | 'user' | 'discardDisk'>): Buffer {
  if (spec.argv.length === 0) throw new Error('main command: argv is empty');
  const { add, body: records } = nulRecords('main command');
  for (const a of spec.argv) add('arg', a);
  for (const e of spec.env) add('env', e);
  add('workdir', spec.workdir);
  if (spec.user !== undefined && spec.user !== '') add('user', spec.user);
  if (spec.discardDisk) add('discard', '1');
  const body = records();
  return Buffer.concat([Buffer.from(`main ${body.length}\n`, 'ascii'), body]);
}

export type GuestEvent =
  | { type: 'boot'; uptime: number }
  | { type: 'started'; uptime: number }
  | { type: 'error'; message: string }
  | { type: 'exit'; code: number; uptime: number };

/** Parses one control line from the guest; unknown lines give undefined. */
export function parseGuestEvent(line: string): GuestEvent | undefined {
  const sp = line.indexOf(' ');
  const word = sp < 0 ? line : line.slice(0, sp);
  const rest = sp < 0 ? '' : line.slice(sp + 1);
  switch (word) {
    case 'boot':
      return { type: 'boot', uptime: Number(rest) };
    case 'started':
      return { type: 'started', uptime: Number(rest) };
    case 'error':
      return { type: 'error', message: rest };
    case 'exit': {
      const [code, up] = rest.split(' ');
      const n = Number(code);
      return Number.isInteger(n) ? { type: 'exit', code: n, uptime: Number(up) } : undefined;
    }
    default:
      return undefined;
  }
}
