/**
 * Image references from REST callers cannot make the host fetch from its own network
 * (docs/THREATS.md, "REST API callers"), proven with real DNS, a real registry and a
 * real redirect, without any traffic leaving the machine. The test builds one network
 * namespace N whose loopback carries every "remote" address:
 *
 *   198.18.0.2   a public registry (benchmark range: stands for the internet)
 *   198.18.0.3   a "registry" on port 5080 that redirects every request to meta.test:5000
 *   169.254.169.254, 10.250.0.2   the same real registry on a link-local (cloud
 *                metadata) and a private address: reachable, so only the policy stops a pull
 *   127.0.0.1    the registry again, Redis, the DNS server (N's /etc/resolv.conf)
 *
 * The DNS server answers pub.test, meta.test, lan.test, loop.test, redirect.test, and
 * rebind.test (public on its first A query, link-local afterwards: DNS rebinding).
 * test/oci/registry-policy-child.ts runs the API, Redis client and puller inside N.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { tempDir, testEnvWithKernel } from '../support/env.js';

const N = `mc-regp-${process.pid}`;
const CHILD = fileURLToPath(new URL('./registry-policy-child.js', import.meta.url));
const procs: ChildProcess[] = [];
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

const DNS_SERVER = `
const dgram = require('node:dgram');
const A = { 'pub.test': [198,18,0,2], 'meta.test': [169,254,169,254], 'lan.test': [10,250,0,2], 'loop.test': [127,0,0,1], 'redirect.test': [198,18,0,3] };
let rebinds = 0;
const s = dgram.createSocket('udp4');
s.on('message', (q, from) => {
  let i = 12, labels = [];
  while (q[i]) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString()); i += q[i] + 1; }
  const name = labels.join('.').toLowerCase();
  const qtype = q.readUInt16BE(i + 1);
  const question = q.subarray(12, i + 5);
  const known = name in A || name === 'rebind.test';
  let addr;
  if (qtype === 1 && name === 'rebind.test') addr = rebinds++ === 0 ? [198,18,0,2] : [169,254,169,254];
  else if (qtype === 1) addr = A[name];
  const head = Buffer.alloc(12);
  q.copy(head, 0, 0, 2);
  head.writeUInt16BE(known ? 0x8180 : 0x8183, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(addr ? 1 : 0, 6);
  // TTL 0: nothing may cache the answer between the API's check and the puller's connect.
  const answer = addr ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, ...addr]) : Buffer.alloc(0);
  s.send(Buffer.concat([head, question, answer]), from.port, from.address);
});
s.bind(53, '127.0.0.1', () => console.log('dns ready'));
`;

function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString();
      if (pattern.test(text)) {
        child.stdout?.off('data', onData);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready:\n${text}`)));
  });
}

before(async () => {
  const env = testEnvWithKernel();
  process.env.MONOCORE_KERNEL_DIR = env.kernelDir;
  ip('netns', 'add', N);
  ip('-n', N, 'link', 'set', 'lo', 'up');
  for (const a of ['198.18.0.2', '198.18.0.3', '169.254.169.254', '10.250.0.2']) ip('-n', N, 'addr', 'add', `${a}/32`, 'dev', 'lo');
  mkdirSync(`/etc/netns/${N}`, { recursive: true });
  writeFileSync(`/etc/netns/${N}/resolv.conf`, 'nameserver 127.0.0.1\n');
  writeFileSync(`/etc/netns/${N}/hosts`, '127.0.0.1 localhost\n');

  const dir = tempDir('registry-policy');
  // The test registry's own storage, served by a second registry process inside N on every address.
  const conf = readFileSync(join(env.stateDir, 'registry.yml'), 'utf8').replace(/addr: .*/, 'addr: 0.0.0.0:5000');
  writeFileSync(join(dir, 'registry.yml'), conf);
  const dns = spawn('ip', ['netns', 'exec', N, process.execPath, '-e', DNS_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const redis = spawn('ip', ['netns', 'exec', N, 'redis-server', '--port', '6379', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const registry = spawn('ip', ['netns', 'exec', N, 'docker-registry', 'serve', join(dir, 'registry.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(dns, redis, registry);
  const registryUp = new Promise<void>((resolve, reject) => {
    let text = '';
    registry.stderr.on('data', (d: Buffer) => {
      text += d.toString();
      if (/listening on/.test(text)) resolve();
    });
    registry.once('exit', (code) => reject(new Error(`docker-registry exited (${code}):\n${text}`)));
  });
  await Promise.all([waitForLine(dns, /dns ready/, 'DNS server'), waitForLine(redis, /Ready to accept connections/, 'redis-server'), registryUp]);
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  try {
    ip('netns', 'del', N);
  } catch {
    // already gone
  }
  rmSync(`/etc/netns/${N}`, { recursive: true, force: true });
});

interface UpOutcome {
  image: string;
  status: number;
  code?: string;
  message?: string;
  issues?: Array<{ path: string; message: string }>;
  pull?: { ok: boolean; reason?: string };
}

test('REST image references: link-local and private registries refused before anything is fetched, and again at connect time (DNS, rebinding, redirects)', async () => {
  const work = tempDir('registry-policy-child');
  const insecure = ['pub.test', 'meta.test', 'lan.test', 'loop.test', 'redirect.test', 'rebind.test', '169.254.169.254', '10.250.0.2'].map((h) => `${h}:${h === 'redirect.test' ? 5080 : 5000}`).join(',');
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', N, process.execPath, CHILD, 'redis://127.0.0.1:6379', work], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, MONOCORE_INSECURE_REGISTRIES: insecure, MONOCORE_REGISTRY_MIRRORS: '', MONOCORE_LOG_LEVEL: 'warn' },
    });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`child exited ${code}:\n${text}`))));
  });
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, UpOutcome> & { redirectUnchecked: { ok: boolean; reason?: string } };

  // Refused by the API: 400 naming the field and the reference, nothing queued.
  for (const [key, image, why] of [
    ['metadataLiteral', '169.254.169.254:5000', /link-local/],
    ['metadataByName', 'meta.test:5000', /meta\.test resolves to 169\.254\.169\.254 is a link-local/],
    ['privateLiteral', '10.250.0.2:5000', /private address/],
    ['privateByName', 'lan.test:5000', /lan\.test resolves to 10\.250\.0\.2 is a private address/],
  ] as const) {
    const o = r[key]!;
    assert.equal(o.status, 400, `${key}: ${JSON.stringify(o)}`);
    assert.equal(o.code, 'MC_OCI_REGISTRY_REFUSED', key);
    assert.ok(o.message?.includes(`service[0].base: image "${image}/monocore-test/busybox:latest"`), `${key} names field and reference: ${o.message}`);
    assert.match(o.message ?? '', why);
    assert.equal(o.issues?.[0]?.path, 'service[0].base');
    assert.equal(o.pull, undefined);
  }

  // Allowed: a public registry, and loopback (the API listens on loopback only); both pulls succeed.
  for (const key of ['publicByName', 'loopbackByName']) {
    assert.equal(r[key]!.status, 202, `${key}: ${JSON.stringify(r[key])}`);
    assert.deepEqual(r[key]!.pull, { ok: true }, key);
  }

  // Accepted (the name was public when checked), then refused where the puller connects.
  for (const [key, target] of [
    ['redirect', /meta\.test refused: it resolves to 169\.254\.169\.254 is a link-local/],
    ['rebind', /rebind\.test refused: it resolves to 169\.254\.169\.254 is a link-local/],
  ] as const) {
    const o = r[key]!;
    assert.equal(o.status, 202, `${key}: ${JSON.stringify(o)}`);
    assert.equal(o.pull?.ok, false, `${key}: the pull must fail`);
    assert.match(o.pull?.reason ?? '', /^MC_OCI_REGISTRY_REFUSED: manifest /, key);
    assert.ok(o.pull?.reason?.includes(`${key}.test:${key === 'redirect' ? 5080 : 5000}/monocore-test/busybox:latest`), `${key}: the error names the reference: ${o.pull?.reason}`);
    assert.match(o.pull?.reason ?? '', target);
  }

  // The worker host (started with defaults) records which backend it runs and why.
  assert.match(String((r as unknown as { backendDetail?: string }).backendDetail), /^qemu \((kvm|hvf|tcg)\), worker hosts run qemu: .*kernel /);

  // Control: without the policy the redirect leads to a working registry, so only the policy stopped it.
  assert.equal(r.redirectUnchecked.ok, true, `control pull through the redirect: ${JSON.stringify(r.redirectUnchecked)}`);
});
