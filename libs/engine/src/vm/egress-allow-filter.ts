import { spawn } from 'node:child_process';
import type { Admission } from './egress-resolver.js';

/**
 * The allow-list filter of one guest (docs/NETWORK.md, "Allow-lists"): an nftables
 * table inside the guest's egress namespace, where passt opens the guest's
 * sockets. It lives and dies with the namespace (nothing on the host to clean up)
 * and comes on top of the host's table, whose drops (the host, private ranges,
 * other VMs) apply whatever this one lets through.
 *
 * - DNS to the gateway (the guest's only nameserver) is redirected to the
 *   resolver's sockets on the namespace's loopback; any other port-53 traffic is
 *   dropped, even to an allowed address.
 * - Everything else leaves only to `ranges` (the list's addresses and CIDRs) or to
 *   `resolved` (addresses the resolver answered for allowed names, each with a
 *   timeout). TCP to anything else is reset at once, so the guest fails fast
 *   instead of waiting for a timeout; the rest is dropped.
 */
export const ALLOW_TABLE = 'monocore_allow';

/** The table, as one `nft -f` transaction (pure; unit-tested). */
export function allowFilterRuleset(gateway: string, ranges: readonly string[]): string {
  return [
    `table inet ${ALLOW_TABLE} {`,
    '  set ranges {',
    '    type ipv4_addr; flags interval;',
    ...(ranges.length > 0 ? [`    elements = { ${ranges.join(', ')} }`] : []),
    '  }',
    '  set resolved {',
    '    type ipv4_addr; flags timeout;',
    '  }',
    '  chain dns_redirect {',
    '    type nat hook output priority -100; policy accept;',
    `    ip daddr ${gateway} meta l4proto { tcp, udp } th dport 53 redirect to :53`,
    '  }',
    '  chain out {',
    '    type filter hook output priority 0; policy drop;',
    // (The resolver's answers, and a redirected query, whose oif the hook still sees as eth0.)
    '    oifname "lo" accept',
    '    ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport 53 accept',
    '    ct state established,related accept',
    '    meta l4proto { tcp, udp } th dport 53 drop',
    '    ip daddr @ranges accept',
    '    ip daddr @resolved accept',
    '    meta l4proto tcp reject with tcp reset',
    '  }',
    '}',
  ].join('\n');
}

/** The `nft -f` batch admitting addresses: add, delete, add — so an address already there gets the new timeout, in one atomic transaction. */
export function admitBatch(admissions: readonly Admission[]): string {
  const set = `inet ${ALLOW_TABLE} resolved`;
  return admissions
    .map(({ address, timeoutS }) =>
      [`add element ${set} { ${address} timeout ${timeoutS}s }`, `delete element ${set} { ${address} }`, `add element ${set} { ${address} timeout ${timeoutS}s }`].join('\n'),
    )
    .join('\n');
}

/** Runs `nft -f -` inside a network namespace. */
export function nftInNamespace(namespace: string, script: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const nft = spawn('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    nft.stderr.on('data', (d: Buffer) => {
      if (err.length < 4096) err += d.toString();
    });
    nft.on('error', reject);
    nft.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft in ${namespace}: ${err.trim() || `exit ${code}`}`))));
    nft.stdin.end(script + '\n');
  });
}

/** The filter of one namespace: installs the table, then admits resolved addresses one transaction at a time. */
export class NamespaceAllowFilter {
  private tail: Promise<void> = Promise.resolve();
  /** When each admitted address stops being open (ms since epoch), to skip transactions that change nothing. */
  private readonly openUntil = new Map<string, number>();

  private constructor(readonly namespace: string) {}

  static async install(namespace: string, gateway: string, ranges: readonly string[]): Promise<NamespaceAllowFilter> {
    await nftInNamespace(namespace, allowFilterRuleset(gateway, ranges));
    return new NamespaceAllowFilter(namespace);
  }

  /** Opens the addresses for their timeouts; resolves once the kernel has them. */
  admit(admissions: readonly Admission[]): Promise<void> {
    const run = async (): Promise<void> => {
      const now = Date.now();
      // Renew only what would close noticeably earlier than asked (within 10 s is close enough).
      const needed = admissions.filter((a) => (this.openUntil.get(a.address) ?? 0) < now + (a.timeoutS - 10) * 1000);
      if (needed.length === 0) return;
      await nftInNamespace(this.namespace, admitBatch(needed));
      for (const a of needed) this.openUntil.set(a.address, now + a.timeoutS * 1000);
    };
    const next = this.tail.then(run);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
