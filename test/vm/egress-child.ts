/**
 * Runs inside the "host" network namespace that test/vm/egress.test.ts creates
 * (via `ip netns exec`), so the egress plumbing — its own namespace, veth,
 * nftables table, ip_forward — is made in that namespace, never on the real host.
 * Boots one guest with local_only = false (and the allow-list given as JSON in
 * argv[3], if any), runs the probes given as argv[2], prints one JSON line with
 * the outcome (with the resolver's refusal log when there is an allow-list).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cleanupEgressOrphans } from '@monocore/engine';
import { backend, spec } from './vm-fixtures.js';

const script = process.argv[2] ?? 'true';
const allow = process.argv[3] ? (JSON.parse(process.argv[3]) as string[]) : undefined;
const qemu = backend();
const s = spec('egress', {
  command: '/bin/sh',
  args: ['-c', script],
  network: { mode: 'group', group: 'eg', address: '10.88.0.2/24', peers: {}, localOnly: false, ...(allow ? { allow } : {}) },
});
let result: object;
try {
  const h = await qemu.start(s);
  const exit = await h.wait();
  result = { exit, stdout: s.stdout.text, stderr: s.stderr.text };
} catch (err) {
  result = { error: { code: (err as { code?: string }).code, message: (err as Error).message } };
}
const leftover = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').filter((l) => / mcegress\d+[@:]/.test(l));
// A namespace left by a crashed worker (no live process holds its slot) is removed at worker start.
const staleSlot = 16000 + Math.floor(Math.random() * 300);
execFileSync('ip', ['netns', 'add', `mcegress-${staleSlot}`]);
const cleaned = await cleanupEgressOrphans();
const staleGone = cleaned.includes(`mcegress-${staleSlot}`) && !existsSync(`/run/netns/mcegress-${staleSlot}`);
const dnsLogPath = `${s.stateDir}/egress-dns.log`;
const dnsLog = existsSync(dnsLogPath) ? readFileSync(dnsLogPath, 'utf8') : undefined;
const rules = execFileSync('nft', ['list', 'table', 'inet', 'monocore_egress'], { encoding: 'utf8' });
console.log(JSON.stringify({ ...result, dnsLog, staleGone, leftoverLinks: leftover, rules, ipForward: execFileSync('sysctl', ['-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim() }));
