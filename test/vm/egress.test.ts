/**
 * Outbound access (local_only = false), for real, without any traffic leaving the
 * machine (docs/NETWORK.md, "Outbound"). The test builds a small world of network
 * namespaces:
 *
 *   "host" ns H: runs the engine (test/vm/egress-child.ts), QEMU and passt; a host
 *                service on 0.0.0.0:16399; default route to W over a veth
 *   "wan" ns W:  198.18.0.2 (benchmark range: stands for the internet) with an httpd
 *                and a DNS server answering wan.test; plus 10.250.0.2 (a private LAN
 *                host) and 169.254.169.254 (a cloud metadata address) on its loopback
 *
 * The guest must reach W's public address, by IP and by name, and nothing else:
 * not the host's address, not its gateway, not private or link-local ranges.
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

// A DNS responder for W: every A query for wan.test gets 198.18.0.2.
const DNS_SERVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
s.on('message', (q, from) => {
  let i = 12, labels = [];
  while (q[i]) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString()); i += q[i] + 1; }
  const qtype = q.readUInt16BE(i + 1);
  const question = q.subarray(12, i + 5);
  const hit = labels.join('.').toLowerCase() === 'wan.test' && qtype === 1;
  const head = Buffer.alloc(12);
  q.copy(head, 0, 0, 2);
  head.writeUInt16BE(hit ? 0x8180 : 0x8183, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(hit ? 1 : 0, 6);
  const answer = hit ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 2]) : Buffer.alloc(0);
  s.send(Buffer.concat([head, question, answer]), from.port, from.address);
});
s.bind(53, '198.18.0.2');
`;

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
  procs.push(spawn('ip', ['netns', 'exec', W, process.execPath, '-e', DNS_SERVER], { stdio: 'ignore' }));
  procs.push(spawn('ip', ['netns', 'exec', H, 'busybox', 'httpd', '-f', '-p', '16399', '-h', hostWww], { stdio: 'ignore' }));
  // Positive controls: from H, every target the guest must not reach does answer.
  for (const url of ['http://198.18.0.2:8080/', 'http://10.250.0.2:8080/', 'http://169.254.169.254:8080/', 'http://198.18.0.1:16399/', 'http://127.0.0.1:16399/']) {
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
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', H, process.execPath, CHILD, probes], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(text));
  });
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
    exit?: { exitCode: number | null; reason: string };
    stdout?: string;
    stderr?: string;
    error?: { message: string };
    leftoverLinks: string[];
    staleGone: boolean;
    rules: string;
    ipForward: string;
  };
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
});
