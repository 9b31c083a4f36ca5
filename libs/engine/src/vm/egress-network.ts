import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Socket as UdpSocket } from 'node:dgram';
import type { Server } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { MonocoreError } from '../errors/index.js';
import type { HostLock } from '../rootfs/host-lock.js';
import { EGRESS_BLOCKED, type EgressAllowList } from './egress-allow-list.js';
import { NamespaceAllowFilter } from './egress-allow-filter.js';
// Types only: the resolver (dns-packet) and pino load when an allow-list needs them (startAllowList).
import type { EgressResolver, Upstream } from './egress-resolver.js';
import { findExecutable } from './find-executable.js';
import { HostSlots } from './host-slots.js';

const run = promisify(execFile);

/**
 * Outbound network access for a guest (`local_only = false`) that can never
 * reach the host (docs/NETWORK.md, "Outbound"):
 *
 *   guest NIC ── unix socket ── passt (inside netns mcegress-N) ── veth ── host: nft filter + NAT ── out
 *
 * passt turns the guest's frames into ordinary sockets, but it makes them inside
 * a network namespace of their own (`mcegress-N`), whose only way out is a veth pair
 * to the host. On the host, an nftables table drops everything arriving from
 * `mcegress*` interfaces (the host ends, `mcegressN`) for the host itself (INPUT: every host address, loopback
 * included), drops forwarding to private, loopback, link-local and multicast
 * ranges (except the host's DNS resolvers on port 53) and to other VMs, and
 * masquerades the rest. `--no-map-gw` stops passt from mapping the gateway
 * address to the namespace's loopback. QEMU itself stays in the host namespace,
 * so port forwards and the group segment work as before.
 *
 * Each VM holds one slot N (a /30 of 100.127.0.0/16; host-slots.ts) for its
 * whole life: a crashed owner's lock goes with it, and the next owner of the
 * slot (or cleanupEgressOrphans at worker start) removes the stale namespace.
 *
 * With an allow-list, the namespace also gets a filter of its own (egress-allow-filter.ts)
 * and the guest's only nameserver is a resolver in this process (egress-resolver.ts),
 * serving on sockets made inside the namespace: names turn into permissions there.
 */
export const EGRESS_POOL = '100.127.0.0/16';
const POOL_BASE = (100 << 24) | (127 << 16);
const SLOTS = 16384;
const TABLE = 'monocore_egress';

export interface EgressGuestConfig {
  /** The guest's address on its egress NIC, e.g. "100.127.0.6/30". */
  cidr: string;
  gateway: string;
  /** IPv4 resolvers for the guest's /etc/resolv.conf: the host's upstream ones, or (with an allow-list) the gateway. */
  dns: string[];
}

export interface EgressOptions {
  /** Only these destinations (docs/NETWORK.md, "Allow-lists"); absent: any public address. */
  allow?: EgressAllowList;
  /** Where the resolver logs refused queries (JSON lines; at most REFUSAL_LOG_LINES per VM start). */
  logPath?: string;
}

interface RefusalLog {
  logger: Logger;
  end: () => void;
}

/** Refusals logged per VM start: a guest asking for names in a loop must not fill the disk. */
export const REFUSAL_LOG_LINES = 1000;

const ipString = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

/** Why outbound access cannot be given on this host, or undefined when it can. */
export function egressUnavailable(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.platform !== 'linux') return `outbound access needs Linux network namespaces (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'outbound access needs root (network namespaces, veth and nftables)';
  for (const [cmd, pkg] of [['passt', 'passt'], ['nft', 'nftables'], ['ip', 'iproute2'], ['setpriv', 'util-linux']] as const) {
    if (!findExecutable(cmd, env)) return `${cmd} not found (apt-get install ${pkg})`;
  }
  return undefined;
}

/**
 * The resolvers the allow-list resolver asks: /etc/resolv.conf's as this process
 * sees them (it runs on the host, so a loopback stub such as systemd-resolved's is fine).
 */
export function upstreamResolvers(read: (p: string) => string | undefined = (p) => (existsSync(p) ? readFileSync(p, 'utf8') : undefined)): Upstream[] {
  const servers = (read('/etc/resolv.conf') ?? '')
    .split('\n')
    .map((l) => /^\s*nameserver\s+([0-9a-fA-F.:]+)\s*$/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined);
  return [...new Set(servers)].map((address) => ({ address }));
}

/** The host's upstream IPv4 resolvers (systemd-resolved's stub 127.0.0.53 replaced by its upstreams). */
export function hostResolvers(read: (p: string) => string | undefined = (p) => (existsSync(p) ? readFileSync(p, 'utf8') : undefined)): string[] {
  const parse = (text: string | undefined): string[] =>
    (text ?? '').split('\n').map((l) => /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(l)?.[1]).filter((x): x is string => x !== undefined);
  let servers = parse(read('/etc/resolv.conf'));
  if (servers.some((s) => s.startsWith('127.'))) servers = [...servers, ...parse(read('/run/systemd/resolve/resolv.conf'))];
  return [...new Set(servers.filter((s) => !s.startsWith('127.') && !s.startsWith('0.')))];
}

let rulesReady: Promise<void> | undefined;
/** The catch-all rule of a host that did not forward before monocore (how a later table knows). */
const NOT_FORWARDING_MARK = 'iifname != "mcegress*" oifname != "mcegress*"';

/** Installs the host's nftables table once per process (an existing one is replaced atomically by this version's rules). */
function ensureHostRules(resolvers: string[]): Promise<void> {
  rulesReady ??= (async () => {
    // An existing table (another worker, an earlier version) is replaced in one transaction, so
    // its rules are this version's; whether the host forwarded before we turned it on is what the
    // first table recorded (its catch-all drop), not what /proc says now.
    const existing = await run('nft', ['list', 'table', 'inet', TABLE]).then((r) => r.stdout, () => undefined);
    const forwarding = existing !== undefined
      ? !existing.includes(NOT_FORWARDING_MARK)
      : readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '1';
    const ruleset = [
      ...(existing !== undefined ? [`delete table inet ${TABLE}`] : []),
      `table inet ${TABLE} {`,
      '  chain input {',
      '    type filter hook input priority -5; policy accept;',
      '    iifname "mcegress*" drop',
      '  }',
      '  chain forward {',
      '    type filter hook forward priority -5; policy accept;',
      ...(resolvers.length > 0 ? [`    iifname "mcegress*" ip daddr { ${resolvers.join(', ')} } meta l4proto { tcp, udp } th dport 53 accept`] : []),
      `    iifname "mcegress*" ip daddr { ${EGRESS_BLOCKED.join(', ')} } drop`,
      '    iifname "mcegress*" oifname "mcegress*" drop',
      '    iifname "mcegress*" accept',
      '    oifname "mcegress*" ct state established,related accept',
      '    oifname "mcegress*" drop',
      // We turn forwarding on for our interfaces only: the rest of the host keeps not forwarding.
      // Bridged traffic is not routing: with br_netfilter (Docker loads it) frames between ports
      // of one bridge pass this hook too, with the bridge as both interfaces; dropping them cut
      // containers on the same Docker network off from each other.
      ...(forwarding ? [] : [`    ${NOT_FORWARDING_MARK} meta iifkind != "bridge" drop`]),
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority 100; policy accept;',
      `    ip saddr ${EGRESS_POOL} oifname != "mcegress*" masquerade`,
      '  }',
      '}',
    ].join('\n');
    await new Promise<void>((resolve, reject) => {
      const nft = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      nft.stderr.on('data', (d: Buffer) => (err += d.toString()));
      nft.on('error', reject);
      nft.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft: ${err.trim() || `exit ${code}`}`))));
      nft.stdin.end(ruleset + '\n');
    });
    if (!forwarding) await run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  })();
  rulesReady.catch(() => (rulesReady = undefined));
  return rulesReady;
}

export class EgressNetwork {
  private closed = false;

  private constructor(
    readonly slot: number,
    readonly guest: EgressGuestConfig,
    /** Connected to passt: hand it to QEMU as a `-netdev socket,fd=` NIC. */
    readonly socket: Socket,
    /** The running passt (it forks away from the process we spawn). */
    private readonly passtPid: number | undefined,
    private readonly lock: HostLock,
    private readonly dir: string,
    /** The allow-list resolver, if any. */
    readonly resolver: EgressResolver | undefined,
    private readonly log: RefusalLog | undefined,
  ) {}

  get namespace(): string {
    return `mcegress-${this.slot}`;
  }

  static async open(id: string, opts: EgressOptions = {}): Promise<EgressNetwork> {
    const why = egressUnavailable();
    if (why) throw new MonocoreError('MC_VM_NETWORK_UNSUPPORTED', `${id}: local_only = false: ${why}`, { id, field: 'network.localOnly' });
    const resolvers = hostResolvers();
    const fail = (what: string, err: unknown): MonocoreError =>
      new MonocoreError('MC_VM_NETWORK_FAILED', `${id}: outbound network: ${what}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`, { id }, { cause: err });
    try {
      await ensureHostRules(resolvers);
    } catch (err) {
      throw fail('installing the nftables rules', err);
    }
    const { slot, lock } = await slots.acquire();
    const ns = `mcegress-${slot}`;
    const hostIf = `mcegress${slot}`;
    const base = POOL_BASE + slot * 4;
    const [hostIp, guestIp] = [ipString(base + 1), ipString(base + 2)];
    let dir: string | undefined;
    let passt: ChildProcess | undefined;
    let passtPid: number | undefined;
    let resolver: EgressResolver | undefined;
    let log: RefusalLog | undefined;
    try {
      await removeSlotNetwork(slot);
      for (const args of [
        ['netns', 'add', ns],
        ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns],
        ['addr', 'add', `${hostIp}/30`, 'dev', hostIf],
        ['link', 'set', hostIf, 'up'],
        ['-n', ns, 'link', 'set', 'lo', 'up'],
        ['-n', ns, 'addr', 'add', `${guestIp}/30`, 'dev', 'eth0'],
        ['-n', ns, 'link', 'set', 'eth0', 'up'],
        ['-n', ns, 'route', 'add', 'default', 'via', hostIp],
      ]) {
        await run('ip', args).catch((err) => {
          throw fail(`ip ${args.join(' ')}`, err);
        });
      }
      // The filter is in place before passt starts: no guest packet ever leaves unfiltered.
      if (opts.allow) ({ resolver, log } = await startAllowList(id, ns, hostIp, opts, fail));
      dir = await mkdtemp(join(tmpdir(), 'mcegr-'));
      // passt creates its socket after dropping to "nobody": the private dir must be theirs.
      await chown(dir, nobodyUid(), -1);
      const sock = join(dir, 'passt.sock');
      // --one-off: passt exits when its one client goes away — QEMU, which holds the
      // socket we connect and dies with its supervisor (pdeathsig). passt forks into
      // its own sandbox and drops to nobody, so it is found by its command line, not as our child.
      passt = spawn('ip', ['netns', 'exec', ns,
        'passt', '--foreground', '--one-off', '--ipv4-only', '--quiet', '--stderr', '--no-map-gw', '--no-dhcp',
        '--socket', sock, '--tcp-ports', 'none', '--udp-ports', 'none',
        '--address', guestIp, '--netmask', '30', '--gateway', hostIp, '--interface', 'eth0'],
      { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      passt.stderr?.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
      const socket = await connectWhenReady(sock, passt, () => stderr);
      passtPid = await pidWithArg(sock);
      const dns = opts.allow ? [hostIp] : resolvers;
      return new EgressNetwork(slot, { cidr: `${guestIp}/30`, gateway: hostIp, dns }, socket, passtPid, lock, dir, resolver, log);
    } catch (err) {
      resolver?.close();
      log?.end();
      passt?.kill('SIGKILL');
      if (passtPid) killQuietly(passtPid);
      await removeSlotNetwork(slot).catch(() => undefined);
      if (dir) await rm(dir, { recursive: true, force: true });
      await lock.release();
      throw err instanceof MonocoreError ? err : fail('starting passt', err);
    }
  }

  /** Stops passt, deletes the namespace (and with it the veth pair), frees the slot. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.resolver?.close();
    if (this.resolver) this.log?.logger.info({ ...this.resolver.stats }, 'resolver closed');
    this.log?.end();
    // Normally gone already (--one-off, QEMU disconnected); make sure — but only if
    // that pid is still our passt, not a process that reused the number since.
    if (this.passtPid && (await pidWithArg(join(this.dir, 'passt.sock'), [this.passtPid])) === this.passtPid) killQuietly(this.passtPid);
    await removeSlotNetwork(this.slot).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    await this.lock.release();
  }
}

/**
 * The allow-list's half of the namespace: its filter, then the resolver on sockets
 * bound inside it (by a short-lived helper that hands them over and exits).
 */
async function startAllowList(
  id: string,
  ns: string,
  gateway: string,
  opts: EgressOptions,
  fail: (what: string, err: unknown) => MonocoreError,
): Promise<{ resolver: EgressResolver; log: RefusalLog | undefined }> {
  const allow = opts.allow!;
  const filter = await NamespaceAllowFilter.install(ns, gateway, allow.ranges).catch((err) => {
    throw fail('installing the allow-list filter', err);
  });
  const upstreams = upstreamResolvers();
  if (upstreams.length === 0) throw fail('the allow-list resolver', new Error('no nameserver in /etc/resolv.conf to forward allowed names to'));
  const { udp, tcp } = await namespaceDnsSockets(ns).catch((err) => {
    throw fail('binding the allow-list resolver in the namespace', err);
  });
  const [{ EgressResolver }, { pino }] = await Promise.all([import('./egress-resolver.js'), import('pino')]);
  const dest = opts.logPath ? pino.destination({ dest: opts.logPath, append: true, sync: true, mkdir: true }) : undefined;
  const log = dest ? { logger: pino({ base: { vm: id } }, dest), end: () => dest.end() } : undefined;
  let lines = 0;
  const resolver = new EgressResolver({
    allow,
    upstreams,
    admit: (a) => filter.admit(a),
    onRefused: (name, reason) => {
      if (!log || ++lines > REFUSAL_LOG_LINES) return;
      if (lines === REFUSAL_LOG_LINES) log.logger.warn(`${REFUSAL_LOG_LINES} refusals logged; further ones are only counted`);
      else log.logger.info({ name, reason }, 'refused');
    },
  });
  resolver.serve(udp, tcp);
  return { resolver, log };
}

const DNS_SOCKETS_HELPER = fileURLToPath(new URL('./egress-dns-sockets.js', import.meta.url));

/** The resolver's UDP and TCP sockets on 127.0.0.1:53 inside `ns` (egress-dns-sockets.ts). */
function namespaceDnsSockets(ns: string): Promise<{ udp: UdpSocket; tcp: Server }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, DNS_SOCKETS_HELPER], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    let udp: UdpSocket | undefined;
    let tcp: Server | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on('message', (m: unknown, handle: unknown) => {
      if (m === 'udp') udp = handle as UdpSocket;
      if (m === 'tcp') tcp = handle as Server;
      if (udp && tcp) {
        clearTimeout(timer);
        resolve({ udp, tcp });
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (udp && tcp) return;
      udp?.close();
      tcp?.close();
      reject(new Error(`helper exited (${code ?? signal}) before handing over its sockets: ${stderr.trim()}`));
    });
  });
}

/** Slot N = the /30 at 100.127.0.0 + 4N, interface mcegressN, namespace mcegress-N. */
const slots = new HostSlots('/run/monocore/egress', SLOTS, 'outbound network slots');

/**
 * Deletes egress namespaces whose slot no live process holds (left by a worker
 * that crashed); returns their names. Called at worker start.
 */
export async function cleanupEgressOrphans(): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir('/run/netns');
  } catch {
    return removed;
  }
  for (const name of names) {
    const slot = Number(/^mcegress-(\d+)$/.exec(name)?.[1] ?? NaN);
    if (!Number.isInteger(slot)) continue;
    const lock = await slots.tryTake(slot);
    if (!lock) continue; // a live VM holds it
    try {
      await removeSlotNetwork(slot);
      removed.push(name);
    } finally {
      await lock.release();
    }
  }
  return removed;
}

/** Deletes slot N's namespace (its veth pair goes with it); nothing there is fine. */
async function removeSlotNetwork(slot: number): Promise<void> {
  await run('ip', ['netns', 'del', `mcegress-${slot}`]).catch(() => undefined);
  await run('ip', ['link', 'del', `mcegress${slot}`]).catch(() => undefined);
}

/** The pid of the process whose command line has `arg` (our private socket path), if any. */
async function pidWithArg(arg: string, among?: number[]): Promise<number | undefined> {
  const pids = among?.map(String) ?? (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(arg) && Number(pid) !== process.pid) return Number(pid);
  }
  return undefined;
}

/** The uid passt drops to (its default --runas). */
function nobodyUid(): number {
  try {
    const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'));
    const uid = Number(line?.split(':')[2]);
    return Number.isInteger(uid) ? uid : 65534;
  } catch {
    return 65534;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Connects to passt's socket once it listens (it binds before dropping privileges). */
async function connectWhenReady(path: string, passt: ChildProcess, stderr: () => string): Promise<Socket> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    // Exit 0 is passt forking into its sandbox; anything else is a failure.
    if ((passt.exitCode !== null && passt.exitCode !== 0) || passt.signalCode !== null) throw new Error(`passt exited (${passt.exitCode ?? passt.signalCode}): ${stderr().trim()}`);
    if (existsSync(path)) {
      const sock = await new Promise<Socket | undefined>((resolve) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(undefined));
      });
      if (sock) return sock;
    }
    if (performance.now() > deadline) throw new Error(`passt did not listen on ${path} within 10 s: ${stderr().trim()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
