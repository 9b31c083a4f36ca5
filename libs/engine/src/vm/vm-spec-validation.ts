import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import { EgressAllowList } from './egress-allow-list.js';
import { RLIMIT_NUMBERS } from './guest-protocol.js';
import type { VmSpec } from './vm-spec.js';

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const HOSTNAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;
const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function bad(spec: VmSpec, field: string, message: string): never {
  throw new MonocoreError('MC_VM_SPEC_INVALID', `vm ${JSON.stringify(spec.id)}: ${field}: ${message}`, { field, id: spec.id });
}

const isDir = (p: string): boolean => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

const validIpv4 = (m: RegExpExecArray | null): boolean => !!m && m.slice(1, 5).every((o) => Number(o) <= 255);

/** Checks every field a backend relies on; throws MC_VM_SPEC_INVALID naming the field. */
export function validateVmSpec(spec: VmSpec): void {
  if (typeof spec.id !== 'string' || !ID_RE.test(spec.id)) bad(spec, 'id', 'must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}');
  if (!isAbsolute(spec.rootfs) || !isDir(spec.rootfs)) bad(spec, 'rootfs', `${spec.rootfs} is not an existing absolute directory`);
  if (!isAbsolute(spec.stateDir)) bad(spec, 'stateDir', `${spec.stateDir} is not an absolute path`);
  if (spec.sandbox) {
    if (spec.command !== '' || spec.args.length > 0) bad(spec, 'command', 'a sandbox runs no command: command must be "" and args []');
  } else if (typeof spec.command !== 'string' || spec.command.length === 0) {
    bad(spec, 'command', 'must be a non-empty string');
  }
  if (spec.command.includes('\0')) bad(spec, 'command', 'contains a NUL byte');
  spec.args.forEach((a, i) => {
    if (typeof a !== 'string') bad(spec, `args[${i}]`, 'must be a string');
    if (a.includes('\0')) bad(spec, `args[${i}]`, 'contains a NUL byte (execve cannot pass it)');
  });
  spec.env.forEach((e, i) => {
    if (typeof e !== 'string' || e.indexOf('=') <= 0) bad(spec, `env[${i}]`, `${JSON.stringify(e)} is not KEY=value`);
    if (e.includes('\0')) bad(spec, `env[${i}]`, 'contains a NUL byte');
  });
  if (spec.workdir !== undefined && (!spec.workdir.startsWith('/') || spec.workdir.includes('\0'))) {
    bad(spec, 'workdir', `${JSON.stringify(spec.workdir)} must be an absolute guest path`);
  }
  if (spec.user !== undefined && (typeof spec.user !== 'string' || !/^[^:\0\n]*(:[^:\0\n]+)?$/.test(spec.user) || spec.user.length > 255)) {
    bad(spec, 'user', `${JSON.stringify(spec.user)} must be "user", "uid", "user:group" or "uid:gid" (no NUL, newline or second ':')`);
  }
  if (spec.hostname !== undefined && !HOSTNAME_RE.test(spec.hostname)) bad(spec, 'hostname', `${JSON.stringify(spec.hostname)} is not a valid hostname`);
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > 64) bad(spec, 'cpus', `${spec.cpus} must be an integer in 1..64`);
  if (!Number.isInteger(spec.ramMib) || spec.ramMib < 64 || spec.ramMib > 1 << 20) bad(spec, 'ramMib', `${spec.ramMib} must be an integer >= 64`);
  if (spec.diskMib !== undefined && (!Number.isInteger(spec.diskMib) || spec.diskMib < 64 || spec.diskMib > 1 << 20)) {
    bad(spec, 'diskMib', `${spec.diskMib} must be an integer from 64 to 1048576`);
  }
  const guestPaths = new Set<string>();
  spec.volumes.forEach((v, i) => {
    if (!isAbsolute(v.host) || !isDir(v.host)) bad(spec, `volumes[${i}].host`, `${v.host} is not an existing absolute directory`);
    if (/[,\0]/.test(v.host)) bad(spec, `volumes[${i}].host`, 'must not contain "," (QEMU option separator)');
    if (!v.guest.startsWith('/') || v.guest === '/' || v.guest.split('/').includes('..') || /[\0\n]/.test(v.guest)) {
      bad(spec, `volumes[${i}].guest`, `${JSON.stringify(v.guest)} must be an absolute guest path other than / without ".."`);
    }
    if (guestPaths.has(v.guest)) bad(spec, `volumes[${i}].guest`, `${v.guest} is mounted twice`);
    guestPaths.add(v.guest);
  });
  const hostPorts = new Set<string>();
  spec.ports.forEach((p, i) => {
    if (!Number.isInteger(p.host) || p.host < 1 || p.host > 65535) bad(spec, `ports[${i}].host`, `${p.host} is not a TCP port`);
    if (!Number.isInteger(p.guest) || p.guest < 1 || p.guest > 65535) bad(spec, `ports[${i}].guest`, `${p.guest} is not a TCP port`);
    if (p.bindAddress !== undefined && !validIpv4(IPV4_RE.exec(p.bindAddress))) bad(spec, `ports[${i}].bindAddress`, `${p.bindAddress} is not an IPv4 address`);
    const key = `${p.bindAddress ?? '127.0.0.1'}:${p.host}`;
    if (hostPorts.has(key)) bad(spec, `ports[${i}].host`, `${key} is forwarded twice`);
    hostPorts.add(key);
  });
  if (/[,\0]/.test(spec.rootfs)) bad(spec, 'rootfs', 'must not contain "," (QEMU option separator)');
  if (spec.network.mode === 'group') {
    const net = spec.network;
    const m = CIDR_RE.exec(net.address);
    if (!validIpv4(m) || Number(m![5]) > 30 || Number(m![5]) < 8) bad(spec, 'network.address', `${net.address} is not an IPv4 CIDR like 10.88.0.2/24`);
    if (net.address.startsWith('10.0.2.')) bad(spec, 'network.address', '10.0.2.0/24 is reserved for the port-forwarding NIC');
    // The switch is keyed by this string: callers scope it (e.g. "<deployment>/<group>") so two
    // deployments' groups of the same name never share a segment.
    if (!/^[a-zA-Z0-9_.:/-]{1,160}$/.test(net.group)) bad(spec, 'network.group', `${JSON.stringify(net.group)} is not a valid group key`);
    if (net.allow !== undefined) {
      if (net.localOnly) bad(spec, 'network.allow', 'needs localOnly false (an allow-list limits the way out; a local-only guest has none)');
      EgressAllowList.parse(net.allow, 'network.allow'); // MC_VM_EGRESS_ALLOW_INVALID naming the entry
    }
    for (const [name, addr] of Object.entries(net.peers)) {
      if (!/^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,62})$/.test(name)) bad(spec, `network.peers.${name}`, 'is not a valid host name');
      if (!validIpv4(IPV4_RE.exec(addr.split('/')[0] ?? ''))) bad(spec, `network.peers.${name}`, `${addr} is not an IPv4 address`);
    }
  }
  (spec.rlimits ?? []).forEach((r, i) => {
    if (!(r.resource in RLIMIT_NUMBERS)) bad(spec, `rlimits[${i}].resource`, `${JSON.stringify(r.resource)} is not a known resource (nofile, nproc, core, ...)`);
    const ok = (v: number): boolean => Number.isInteger(v) && v >= -1;
    if (!ok(r.soft) || !ok(r.hard)) bad(spec, `rlimits[${i}]`, 'soft and hard must be integers >= 0 (or -1 for unlimited)');
    if (r.hard !== -1 && (r.soft === -1 || r.soft > r.hard)) bad(spec, `rlimits[${i}].soft`, `soft ${r.soft} exceeds hard ${r.hard}`);
  });
  if (spec.bootTimeoutMs !== undefined && (!Number.isFinite(spec.bootTimeoutMs) || spec.bootTimeoutMs <= 0)) bad(spec, 'bootTimeoutMs', 'must be > 0');
}
