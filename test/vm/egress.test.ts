/**
 * Outbound access (local_only = false), for real, without any traffic leaving the
 * machine (docs/NETWORK.md, "Outbound"). The test builds a small world of network
 * namespaces:
 *
 *   "host" ns H: runs the engine (test/vm/egress-child.ts), QEMU and passt; a host
 *                service on 0.0.0.0:16399; default route to W over a veth
 *   "wan" ns W:  198.18.0.2 (benchmark range: stands for the internet) with an httpd
 *                on every address and a DNS server (wan-dns-server.ts) answering
 *                several names; 198.18.1.3/.5/.9/.66 (more "internet" hosts),
 *                10.250.0.2 (a private LAN host) and 169.254.169.254 (a cloud
 *                metadata address) on its loopback
 *
 * Without an allow-list the guest must reach W's public addresses, by IP and by
 * name, and nothing else: not the host's address, not its gateway, not private or
 * link-local ranges. With one, only what the list names (docs/NETWORK.md).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { kernelDir, tempDir, testRootfs } from './vm-fixtures.js';

const H = `mc-egh-${process.pid}`;
const W = `mc-egw-${process.pid}`;
const CHILD = fileURLToPath(new URL('./egress-child.js', import.meta.url));
const procs: ChildProcess[] = [];
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
const inNs = (ns: string, ...cmd: string[]): string => execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const DNS_SERVER = fileURLToPath(new URL('./wan-dns-server.js', import.meta.url));
/** Every question W's DNS server received, `<name> <type>`. */
const wanQueries: string[] = [];

before(async () => {
  // The test image's rootfs is pulled from the registry on the real loopback: build (or
  // find) it here, before the engine runs inside H where that loopback is out of reach.
  testRootfs();
  ip('netns', 'add', H);
  ip('netns', 'add', W);
  ip('link', 'add', 'mctH0', 'netns', H, 'type', 'veth', 'peer', 'name', 'mctW0', 'netns', W);
  for (const [ns, dev, addr] of [[H, 'mctH0', '198.18.0.1/30'], [W, 'mctW0', '198.18.0.2/30']] as const) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'addr', 'add', addr, 'dev', dev);
    ip('-n', ns, 'link', 'set', dev, 'up');
  }
  ip('-n', H, 'route', 'add', 'default', 'via', '198.18.0.2');
  for (const a of ['198.18.1.3', '198.18.1.5', '198.18.1.9', '198.18.1.66']) ip('-n', W, 'addr', 'add', `${a}/32`, 'dev', 'lo');
  ip('-n', W, 'addr', 'add', '10.250.0.2/32', 'dev', 'lo');
  ip('-n', W, 'addr', 'add', '169.254.169.254/32', 'dev', 'lo');
  // W answers to the egress pool through H (the masquerade makes that unneeded; a reply route is harmless).
  ip('-n', W, 'route', 'add', '100.127.0.0/16', 'via', '198.18.0.1');
  // H's resolver (ip netns exec bind-mounts /etc/netns/H/resolv.conf over /etc/resolv.conf).
  mkdirSync(`/etc/netns/${H}`, { recursive: true });
  writeFileSync(`/etc/netns/${H}/resolv.conf`, 'nameserver 198.18.0.2\n');
  const www = tempDir('egress-www');
  writeFileSync(`${www}/index.html`, 'wan-ok\n');
  const hostWww = tempDir('egress-host-www');
  writeFileSync(`${hostWww}/index.html`, 'host-service\n');
  procs.push(spawn('ip', ['netns', 'exec', W, 'busybox', 'httpd', '-f', '-p', '8080', '-h', www], { stdio: 'ignore' }));
  const dns = spawn('ip', ['netns', 'exec', W, process.execPath, DNS_SERVER, '198.18.0.2'], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(dns);
  let dnsOut = '';
  dns.stdout.on('data', (d: Buffer) => {
    dnsOut += d.toString();
    let nl: number;
    while ((nl = dnsOut.indexOf('\n')) >= 0) {
      const line = dnsOut.slice(0, nl);
      dnsOut = dnsOut.slice(nl + 1);
      if (line.startsWith('query ')) wanQueries.push(line.slice(6));
    }
  });
  procs.push(spawn('ip', ['netns', 'exec', H, 'busybox', 'httpd', '-f', '-p', '16399', '-h', hostWww], { stdio: 'ignore' }));
  // Positive controls: from H, every target the guest must not reach does answer.
  for (const url of ['http://198.18.0.2:8080/', 'http://198.18.1.3:8080/', 'http://198.18.1.66:8080/', 'http://10.250.0.2:8080/', 'http://169.254.169.254:8080/', 'http://198.18.0.1:16399/', 'http://127.0.0.1:16399/']) {
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      try {
        body = inNs(H, 'curl', '-sf', '-m', '2', url);
      } catch {
        await sleep(100);
      }
    }
    assert.ok(body, `control: ${url} answers from the "host" namespace`);
  }
  // And W's DNS server answers H (the engine's upstream) for a name the guests will be refused.
  assert.match(inNs(H, 'busybox', 'nslookup', '-type=a', 'other.test'), /Address: 198\.18\.1\.3/);
  // (Its log line arrives on the server's stdout a moment later: wait for it before starting clean.)
  for (let i = 0; i < 250 && !wanQueries.includes('other.test A'); i++) await sleep(20);
  assert.ok(wanQueries.includes('other.test A'), `W's server reports its queries: ${wanQueries.join(', ')}`);
  wanQueries.length = 0;
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  for (const ns of [H, W]) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
  }
  rmSync(`/etc/netns/${H}`, { recursive: true, force: true });
});

/** Runs the probes in one guest (egress-child.ts, inside H); its JSON outcome. */
async function runGuest(probes: string, allow?: string[]): Promise<{
  exit?: { exitCode: number | null; reason: string };
  stdout?: string;
  stderr?: string;
  error?: { message: string };
  dnsLog?: string;
  leftoverLinks: string[];
  staleGone: boolean;
  rules: string;
  ipForward: string;
}> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', H, process.execPath, CHILD, probes, ...(allow ? [JSON.stringify(allow)] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(text));
  });
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Awaited<ReturnType<typeof runGuest>>;
}

test('egress: a local_only = false guest reaches the outside by IP and by name, but not the host, its gateway, private or link-local ranges', async () => {
  const probes = [
    'cat /etc/resolv.conf | sed "s/^/resolv: /"',
    'GW=$(ip route | awk \'/^default/ {print $3}\'); echo "gateway $GW"',
    'probe() { if timeout 6 wget -q -O - "http://$1/" 2>/dev/null | grep -q .; then echo "reach $2"; else echo "blocked $2"; fi; }',
    'probe 198.18.0.2:8080 wan',
    'probe wan.test:8080 wan-by-name',
    // Dropped connections only time out: probe them side by side.
    'probe 198.18.0.1:16399 host-address & probe "$GW:16399" gateway & probe 10.250.0.2:8080 private & probe 169.254.169.254:8080 metadata & wait',
    'echo done',
  ].join('\n');
  const r = await runGuest(probes);
  assert.equal(r.error, undefined, r.error?.message);
  assert.deepEqual(r.exit, { exitCode: 0, reason: 'exited' }, r.stderr);
  const lines = (r.stdout ?? '').split('\n');
  assert.ok(lines.includes('resolv: nameserver 198.18.0.2'), `the guest uses the host's resolver:\n${r.stdout}`);
  assert.match(r.stdout ?? '', /^gateway 100\.127\.\d+\.\d+$/m);
  assert.ok(lines.includes('reach wan'), r.stdout);
  assert.ok(lines.includes('reach wan-by-name'), r.stdout);
  for (const target of ['host-address', 'gateway', 'private', 'metadata']) assert.ok(lines.includes(`blocked ${target}`), `${target}:\n${r.stdout}`);
  assert.ok(lines.includes('done'));
  // Torn down with the VM: no veth left; the host table stays (one per boot), forwarding on.
  assert.deepEqual(r.leftoverLinks, []);
  assert.equal(r.staleGone, true, 'cleanupEgressOrphans removed a namespace whose slot nobody holds');
  assert.match(r.rules, /iifname "mcegress\*" drop/);
  assert.match(r.rules, /masquerade/);
  assert.equal(r.ipForward, '1');
});

test('egress allow-list: only allowed names resolve, only their addresses and listed ranges are reached; CNAMEs to other names, private answers and other DNS servers are refused', async () => {
  const allow = ['allowed.test', 'direct.test', 'alias.test', '*.cdn.test', 'private.test', 'flip.test', 'flip-now.test', '198.18.1.64/26'];
  const probes = [
    'cat /etc/resolv.conf | sed "s/^/resolv: /"',
    'GW=$(ip route | awk \'/^default/ {print $3}\'); echo "gateway $GW"',
    'probe() { if timeout 6 wget -q -O - "http://$1/" 2>/dev/null | grep -q .; then echo "reach $2"; else echo "blocked $2"; fi; }',
    'resolves() { if timeout 6 nslookup -type=a "$1" $3 >/dev/null 2>&1; then echo "resolves $2"; else echo "unresolved $2"; fi; }',
    'probe allowed.test:8080 allowed-name',
    'probe a.cdn.test:8080 wildcard-name',
    'resolves other.test disallowed-name',
    'resolves secret-data.other.test exfil-name',
    'probe other.test:8080 disallowed-name',
    'probe 198.18.1.3:8080 disallowed-ip',
    'probe 198.18.1.66:8080 listed-range',
    'resolves alias.test cname-to-disallowed',
    'probe alias.test:8080 cname-to-disallowed',
    'resolves private.test private-answer',
    'probe private.test:8080 private-answer',
    'probe flip.test:8080 flip-public',
    'resolves flip-now.test flip-trigger',
    'resolves flip.test flip-private',
    'probe flip.test:8080 flip-private',
    // The address allowed.test answered is open, but not for DNS: another server is never asked.
    'resolves direct.test direct-dns 198.18.0.2',
    'probe 198.18.0.2:8080 allowed-address',
    'probe 198.18.0.1:16399 host-address & probe "$GW:16399" gateway & probe 10.250.0.2:8080 private & probe 169.254.169.254:8080 metadata & wait',
    'echo done',
  ].join('\n');
  wanQueries.length = 0;
  const r = await runGuest(probes, allow);
  assert.equal(r.error, undefined, r.error?.message);
  assert.deepEqual(r.exit, { exitCode: 0, reason: 'exited' }, r.stderr);
  const out = r.stdout ?? '';
  const lines = out.split('\n');
  const gw = /^gateway (100\.127\.\d+\.\d+)$/m.exec(out)?.[1];
  assert.ok(gw, out);
  assert.ok(lines.includes(`resolv: nameserver ${gw}`), `the guest's only nameserver is monocore's resolver at its gateway:\n${out}`);
  for (const expected of [
    'reach allowed-name',
    'reach wildcard-name',
    'unresolved disallowed-name',
    'unresolved exfil-name',
    'blocked disallowed-name',
    'blocked disallowed-ip',
    'reach listed-range',
    'unresolved cname-to-disallowed',
    'blocked cname-to-disallowed',
    'unresolved private-answer',
    'blocked private-answer',
    'reach flip-public',
    'unresolved flip-trigger', // NXDOMAIN: the trigger has no address
    'unresolved flip-private',
    'blocked flip-private',
    'unresolved direct-dns',
    'reach allowed-address',
    'blocked host-address',
    'blocked gateway',
    'blocked private',
    'blocked metadata',
    'done',
  ]) {
    assert.ok(lines.includes(expected), `${expected}:\n${out}`);
  }
  // Names not on the list never left the host: W's server saw only allowed names (and no query sent to it directly).
  const seen = new Set(wanQueries.map((q) => q.split(' ')[0] ?? ''));
  for (const name of seen) assert.ok(['allowed.test', 'a.cdn.test', 'alias.test', 'private.test', 'flip.test', 'flip-now.test'].includes(name), `W was asked for ${name}: ${[...seen].join(', ')}`);
  for (const name of ['allowed.test', 'a.cdn.test', 'alias.test', 'private.test', 'flip.test']) assert.ok(seen.has(name), `W answered ${name}`);
  assert.ok(!seen.has('direct.test'), 'the direct query to W never arrived');
  assert.ok(wanQueries.every((q) => q.endsWith(' A')), `only A queries are forwarded: ${wanQueries.join(', ')}`);
  // The operator sees why: the refusal log in the service's state dir.
  const log = (r.dnsLog ?? '').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { name?: string; reason?: string; msg: string; vm: string });
  const reason = (name: string): string | undefined => log.find((l) => l.name === name)?.reason;
  assert.equal(reason('other.test'), 'not in the allow-list');
  assert.equal(reason('alias.test'), 'CNAME to other.test, which is not in the allow-list');
  assert.match(reason('private.test') ?? '', /^answered 10\.250\.0\.2 \(10\.0\.0\.0\/8 \(private\)\)$/);
  assert.match(reason('flip.test') ?? '', /^answered 10\.250\.0\.2/);
  assert.ok(log.some((l) => l.msg === 'resolver closed'), r.dnsLog);
  assert.deepEqual(r.leftoverLinks, []);
});

test('egress: `monocore run --net outbound` reaches the outside; without it the guest has no way out', async () => {
  const cli = fileURLToPath(new URL('../../../apps/cli/dist/main.js', import.meta.url));
  const image = process.env.MONOCORE_TEST_IMAGE ?? '';
  assert.ok(image, 'MONOCORE_TEST_IMAGE is set');
  const env = { ...process.env, MONOCORE_HOME: tempDir('egress-cli-home'), MONOCORE_KERNEL_DIR: kernelDir() };
  // Pulled here (the registry is on the real loopback); run in H uses the local copy.
  const pull = spawnSync(process.execPath, [cli, 'pull', '-q', image], { env, encoding: 'utf8' });
  assert.equal(pull.status, 0, pull.stderr);
  const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync('ip', ['netns', 'exec', H, process.execPath, cli, 'run', '-q', ...args, image, '--', 'sh', '-c', 'timeout 6 wget -q -O - http://198.18.0.2:8080/ || echo no-way-out'], { env, encoding: 'utf8', timeout: 120_000 });
  const out = run('--net', 'outbound');
  assert.equal(out.status, 0, out.stderr);
  assert.equal(out.stdout, 'wan-ok\n');
  const none = run();
  assert.equal(none.status, 0, none.stderr);
  assert.equal(none.stdout, 'no-way-out\n');
  // --allow is checked before anything is pulled or booted: it needs --net outbound, and each entry is named.
  for (const [args, message] of [
    [['--allow', 'pypi.org'], /--allow limits the way out: it needs --net outbound/],
    [['--net', 'outbound', '--allow', 'pypi.org', '--allow', '10.0.0.0/8'], /--allow\[1\]: 10\.0\.0\.0\/8 lies in 10\.0\.0\.0\/8 \(private\)/],
  ] as const) {
    const bad = run(...args);
    assert.equal(bad.status, 2, `usage error: ${bad.stderr}`);
    assert.match(bad.stderr, message);
  }
});
