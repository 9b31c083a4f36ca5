import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { buildConnector } from 'undici';
import { z } from 'zod';
import { MonocoreError } from '../errors/index.js';
import { parseImageReference } from './image-reference.js';
import { normalizeRegistryHost } from './registry-credentials.js';

/**
 * Where an image may come from when someone who is not the operator names it
 * (a REST body). A registry is a URL the puller fetches on the operator's
 * machine, so an image reference is a request forgery waiting to happen:
 * `169.254.169.254/latest:meta-data` would make the host talk to the cloud
 * metadata service, `10.0.0.5:6379/x` to a private Redis. So:
 *
 * - link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata) are always refused;
 * - loopback and private addresses (RFC 1918, CGNAT 100.64/10, unique-local fc00::/7,
 *   0.0.0.0/8, multicast and reserved) only when listed (`MONOCORE_API_REGISTRIES`),
 *   loopback also when `allowLoopback` (an API that listens on loopback only: its callers
 *   are local processes that reach loopback anyway);
 * - everything else (public addresses) is allowed.
 *
 * The same rule is applied twice: to the reference before anything is queued
 * (`check`, resolving names once) and to every address the puller actually
 * connects to (`connector`: after DNS, for each redirect and token realm), so a
 * name that resolves differently later (DNS rebinding) or a registry that
 * redirects to a refused address fails too.
 */

/** What travels with a pull job: the policy is the API's, the puller enforces it. */
export const RegistryPolicyDataSchema = z.strictObject({
  /** `host[:port]` names allowed as they are, or addresses / CIDR ranges. */
  allow: z.array(z.string().min(1).max(300)).max(256),
  allowLoopback: z.boolean(),
});
export type RegistryPolicyData = z.infer<typeof RegistryPolicyDataSchema>;

export type AddressClass = 'public' | 'loopback' | 'private' | 'link-local';

const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet('169.254.0.0', 16, 'ipv4');
LINK_LOCAL.addSubnet('fe80::', 10, 'ipv6');

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
// "This network": Linux connects 0.0.0.0 to the local host.
LOOPBACK.addSubnet('0.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addAddress('::', 'ipv6');

const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  // Carrier-grade NAT; also where some clouds put their metadata service (100.100.100.200).
  ['100.64.0.0', 10],
  // IETF protocol assignments (192.0.0.0/24), multicast and the reserved class E.
  ['192.0.0.0', 24],
  ['224.0.0.0', 3],
] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv4');
}
PRIVATE.addSubnet('fc00::', 7, 'ipv6');
PRIVATE.addSubnet('ff00::', 8, 'ipv6');
// IPv4 embedded in IPv6 by a NAT64 gateway: the v4 half decides, but we cannot know it is translated.
PRIVATE.addSubnet('64:ff9b::', 96, 'ipv6');

/** `::ffff:a.b.c.d`, `::ffff:a9fe:a9fe` and `::a.b.c.d` are IPv4 addresses for every purpose here. */
function embeddedIpv4(address: string): string | undefined {
  const a = address.toLowerCase();
  const dotted = /^::(?:ffff:)?(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

/** The class of one IP address (v4 or v6). */
export function classifyAddress(address: string): AddressClass {
  const plain = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v4 = isIP(plain) === 6 ? embeddedIpv4(plain) : undefined;
  const ip = v4 ?? plain;
  const family = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
  if (LINK_LOCAL.check(ip, family)) return 'link-local';
  if (LOOPBACK.check(ip, family)) return 'loopback';
  if (PRIVATE.check(ip, family)) return 'private';
  return 'public';
}

/** Splits "host:port", "[v6]:port", "v6" and "host" into host and (maybe) port. */
function splitHostPort(hostPort: string): { host: string; port?: string } {
  const h = hostPort.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    const rest = h.slice(end + 1);
    return rest.startsWith(':') ? { host: h.slice(1, end), port: rest.slice(1) } : { host: h.slice(1, end) };
  }
  if (isIP(h) === 6) return { host: h };
  const colon = h.lastIndexOf(':');
  return colon > 0 ? { host: h.slice(0, colon), port: h.slice(colon + 1) } : { host: h };
}

/** The host the puller contacts for a registry (Docker Hub's API lives on another name). */
export function registryConnectHost(registry: string): string {
  const host = normalizeRegistryHost(registry);
  return host === 'docker.io' ? 'registry-1.docker.io' : host;
}

export class RegistryPolicy {
  readonly data: RegistryPolicyData;
  private readonly names: Array<{ host: string; port?: string }> = [];
  private readonly ranges = new BlockList();

  constructor(data: RegistryPolicyData) {
    this.data = RegistryPolicyDataSchema.parse(data);
    for (const entry of this.data.allow) {
      const e = entry.trim();
      const slash = e.indexOf('/');
      if (slash > 0) {
        const net = e.slice(0, slash);
        const bits = Number(e.slice(slash + 1));
        const family = isIP(net);
        if (family === 0 || !Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) {
          throw new MonocoreError('MC_USAGE', `MONOCORE_API_REGISTRIES: "${entry}" is not an address range like 10.0.0.0/8 or fd00::/8`, { entry });
        }
        this.ranges.addSubnet(net, bits, family === 4 ? 'ipv4' : 'ipv6');
      } else if (isIP(e)) {
        this.ranges.addAddress(e, isIP(e) === 4 ? 'ipv4' : 'ipv6');
      } else {
        const hp = splitHostPort(e);
        if (!hp.host || (hp.port !== undefined && !/^\d{1,5}$/.test(hp.port))) {
          throw new MonocoreError('MC_USAGE', `MONOCORE_API_REGISTRIES: "${entry}" is not host[:port], an address or an address range`, { entry });
        }
        this.names.push(hp);
      }
    }
  }

  /**
   * Parses MONOCORE_API_REGISTRIES (comma or whitespace separated: `registry.lan:5000`,
   * `10.1.0.0/16`, `127.0.0.1:15000`). `allowLoopback` is the default for loopback.
   */
  static fromEnv(value: string | undefined, options: { allowLoopback: boolean }): RegistryPolicy {
    const allow = (value ?? '').split(/[\s,]+/).filter((s) => s.length > 0);
    return new RegistryPolicy({ allow, allowLoopback: options.allowLoopback });
  }

  /** The operator listed this registry by name (its addresses are then the operator's business). */
  private listedName(host: string, port: string | undefined): boolean {
    const h = host.toLowerCase().replace(/^\[|\]$/g, '');
    return this.names.some((n) => n.host === h && (n.port === undefined || n.port === port));
  }

  /** Why connecting to `address` (for registry host `host`) is refused, or undefined when it is allowed. */
  refusal(address: string, host?: { host: string; port?: string }): string | undefined {
    const cls = classifyAddress(address);
    if (cls === 'link-local') return `${address} is a link-local address (cloud metadata lives there), never allowed`;
    if (cls === 'public') return undefined;
    if (cls === 'loopback' && this.data.allowLoopback) return undefined;
    if (host && this.listedName(host.host, host.port)) return undefined;
    const plain = embeddedIpv4(address) ?? address;
    if (this.ranges.check(plain, isIP(plain) === 4 ? 'ipv4' : 'ipv6')) return undefined;
    return `${address} is a ${cls} address; list the registry or its range in MONOCORE_API_REGISTRIES on the API server to allow it`;
  }

  private refused(reference: string, field: string | undefined, registry: string, reason: string): MonocoreError {
    return new MonocoreError(
      'MC_OCI_REGISTRY_REFUSED',
      `${field ? `${field}: ` : ''}image "${reference}": registry ${registry} refused: ${reason}`,
      { reference, registry, reason, ...(field ? { field } : {}) },
    );
  }

  /**
   * Checks one image reference before anything is fetched: its registry host
   * (an address literal, or every address its name resolves to now). A name
   * that does not resolve here passes: the puller's connector checks whatever
   * it resolves to later. Throws MC_OCI_REGISTRY_REFUSED naming the reference (and `field`).
   */
  async checkReference(reference: string, field?: string): Promise<void> {
    const ref = parseImageReference(reference);
    const connectHost = registryConnectHost(ref.registry);
    const hp = splitHostPort(connectHost);
    // Without a port the puller speaks HTTPS (plain HTTP only to loopback and listed insecure hosts).
    hp.port ??= '443';
    const addresses = isIP(hp.host) ? [hp.host] : await resolveAll(hp.host);
    for (const address of addresses) {
      const why = this.refusal(address, hp);
      if (why) throw this.refused(reference, field, ref.registry, isIP(hp.host) ? why : `${hp.host} resolves to ${why}`);
    }
  }

  /** Checks several references (e.g. every `service[i].base` of a config); one error lists every refused one. */
  async check(images: ReadonlyArray<{ field: string; reference: string }>): Promise<void> {
    const issues: Array<{ path: string; message: string }> = [];
    let first: MonocoreError | undefined;
    await Promise.all(
      images.map(async ({ field, reference }) => {
        try {
          await this.checkReference(reference, field);
        } catch (err) {
          if (!(err instanceof MonocoreError) || err.code !== 'MC_OCI_REGISTRY_REFUSED') throw err;
          first ??= err;
          issues.push({ path: field, message: err.message.slice(field.length + 2) });
        }
      }),
    );
    if (!first) return;
    issues.sort((a, b) => a.path.localeCompare(b.path));
    throw new MonocoreError('MC_OCI_REGISTRY_REFUSED', issues.length === 1 ? first.message : `${issues.length} image references refused: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, {
      ...first.details,
      issues,
    });
  }

  /**
   * An undici connector that checks each address before the socket opens: names
   * are resolved by our own lookup (so the checked address is the one connected to;
   * no second resolution to rebind), address literals are checked as they are.
   * `exempt` hosts (the operator's own mirrors) are not checked.
   */
  connector(options: { timeout?: number; exempt?: readonly string[] } = {}): buildConnector.connector {
    const exempt = new Set((options.exempt ?? []).map((h) => normalizeRegistryHost(h)));
    const timeout = options.timeout !== undefined ? { timeout: options.timeout } : {};
    const unchecked = buildConnector(timeout);
    const checked = buildConnector({ ...timeout, lookup: this.checkedLookup() });
    return (opts, callback) => {
      const host = opts.hostname.replace(/^\[|\]$/g, '').toLowerCase();
      const port = opts.port ? String(opts.port) : opts.protocol === 'https:' ? '443' : '80';
      const hostPort = `${opts.hostname}:${port}`.toLowerCase();
      if (exempt.has(hostPort) || exempt.has(host) || this.listedName(host, port)) return unchecked(opts, callback);
      if (isIP(host)) {
        const why = this.refusal(host);
        if (why) {
          callback(new MonocoreError('MC_OCI_REGISTRY_REFUSED', `connection to ${hostPort} refused: ${why}`, { host: hostPort, reason: why }), null);
          return;
        }
      }
      return checked(opts, callback);
    };
  }

  /** A `lookup` for net.connect that fails when any address of the name is refused. */
  private checkedLookup(): LookupFunction {
    return (hostname, options, callback) => {
      dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err, '', 0);
        const list = addresses as LookupAddress[];
        for (const a of list) {
          const why = this.refusal(a.address);
          if (why) {
            const e = new MonocoreError('MC_OCI_REGISTRY_REFUSED', `connection to ${hostname} refused: it resolves to ${why}`, { host: hostname, reason: why });
            return callback(e as unknown as NodeJS.ErrnoException, '', 0);
          }
        }
        if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
        const first = list[0];
        if (!first) return callback(Object.assign(new Error(`${hostname}: no address`), { code: 'ENOTFOUND' }), '', 0);
        callback(null, first.address, first.family);
      });
    };
  }
}

/** Every address a name resolves to now (the system resolver, as the puller uses); none when it does not resolve. */
async function resolveAll(host: string): Promise<string[]> {
  return new Promise((resolve) => {
    dnsLookup(host, { all: true }, (err, addresses) => resolve(err ? [] : addresses.map((a) => a.address)));
  });
}
