/**
 * Runs inside the "host" network namespace that test/vm/egress.test.ts creates
 * (via `ip netns exec`), so the egress plumbing — its own namespace, veth,
 * nftables table, ip_forward — is made in that namespace, never on the real host.
 * Boots one guest with local_only = false, runs the probes given as argv[2],
 * prints one JSON line with the outcome.
 */
import { execFileSync } from 'node:child_process';
import { backend, spec } from './vm-fixtures.js';

const script = process.argv[2] ?? 'true';
const qemu = backend();
const s = spec('egress', {
  command: '/bin/sh',
  args: ['-c', script],
  network: { mode: 'group', group: 'eg', address: '10.88.0.2/24', peers: {}, localOnly: false },
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
const rules = execFileSync('nft', ['list', 'table', 'inet', 'monocore_egress'], { encoding: 'utf8' });
console.log(JSON.stringify({ ...result, leftoverLinks: leftover, rules, ipForward: execFileSync('sysctl', ['-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim() }));
