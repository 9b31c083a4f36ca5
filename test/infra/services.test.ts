// The shared test services answer for real: Redis (PING, AOF on, noeviction) and the
// loopback OCI registry with the two test images built by scripts/build-test-images.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { testEnv, tempDir, waitFor, uniqueId, repoRoot } from '../support/env.js';
import { existsSync, rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { createServer, type AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: { digest: string; mediaType: string };
  layers: { digest: string; mediaType: string; size: number }[];
}

async function getJson<T>(url: string, accept?: string): Promise<{ status: number; body: T; contentType: string }> {
  const res = await request(url, { headers: accept ? { accept } : {}, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, `GET ${url} -> ${res.statusCode}: ${text.slice(0, 200)}`);
  return { status: res.statusCode, body: JSON.parse(text) as T, contentType: String(res.headers['content-type']) };
}

/** `127.0.0.1:15000/monocore-test/busybox:latest` -> manifest URL. */
function manifestUrl(ref: string): string {
  const slash = ref.indexOf('/');
  const colon = ref.lastIndexOf(':');
  return `http://${ref.slice(0, slash)}/v2/${ref.slice(slash + 1, colon)}/manifests/${ref.slice(colon + 1)}`;
}

test('Redis answers PING, persists with AOF and never evicts', async (t) => {
  const redis = new Redis(testEnv().redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  t.after(() => redis.disconnect());
  await redis.connect();
  assert.equal(await redis.ping(), 'PONG');
  assert.deepEqual(await redis.config('GET', 'appendonly'), ['appendonly', 'yes']);
  assert.deepEqual(await redis.config('GET', 'maxmemory-policy'), ['maxmemory-policy', 'noeviction']);
  const key = `monocore-test:infra:${uniqueId()}`;
  await redis.set(key, 'v', 'EX', 60);
  assert.equal(await redis.get(key), 'v');
  await redis.del(key);
});

test('registry answers /v2/ and serves both test images as OCI manifests', async () => {
  const env = testEnv();
  const base = await request(`http://${env.registry}/v2/`);
  await base.body.dump();
  assert.equal(base.statusCode, 200);
  assert.equal(base.headers['docker-distribution-api-version'], 'registry/2.0');

  const single = await getJson<Manifest>(manifestUrl(env.image), OCI_MANIFEST);
  assert.match(single.contentType, /application\/vnd\.oci\.image\.manifest\.v1\+json/);
  assert.equal(single.body.schemaVersion, 2);
  assert.equal(single.body.layers.length, 1, 'busybox image has one layer');

  const layered = await getJson<Manifest>(manifestUrl(env.imageLayered), OCI_MANIFEST);
  assert.equal(layered.body.layers.length, 2, 'busybox-layered image has two layers');
  assert.equal(layered.body.layers[0]?.digest, single.body.layers[0]?.digest, 'layered image shares the base layer');

  const repo = env.image.slice(env.image.indexOf('/') + 1, env.image.lastIndexOf(':'));
  const config = await getJson<{ architecture: string; os: string; config: { Cmd?: string[]; Env?: string[] } }>(
    `http://${env.registry}/v2/${repo}/blobs/${single.body.config.digest}`,
  );
  assert.equal(config.body.os, 'linux');
  assert.equal(config.body.architecture, 'amd64');
  assert.deepEqual(config.body.config.Cmd, ['/bin/sh']);
  assert.ok(config.body.config.Env?.includes('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'));
});

test('tempDir creates a fresh directory under the state dir; waitFor times out with a clear message', async (t) => {
  const env = testEnv();
  const dir = tempDir('infra-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.ok(dir.startsWith(`${env.stateDir}/tmp/infra-`), dir);
  assert.ok(existsSync(dir));

  let n = 0;
  assert.equal(await waitFor(() => (++n >= 3 ? n : 0), { what: 'a counter', intervalMs: 1 }), 3);
  await assert.rejects(
    waitFor(() => false, { what: 'something that never happens', timeoutMs: 30, intervalMs: 5 }),
    /timed out after 30ms waiting for something that never happens/,
  );
});

/** Entry names of an uncompressed tar (ustar headers; enough for umoci's layers). */
function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, len: number): string => header.subarray(start, start + len).toString('utf8').replace(/\0.*$/s, '');
    const prefix = field(345, 155);
    names.push(prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    const size = parseInt(field(124, 12).trim() || '0', 8);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

test('the second layer of the layered image adds /etc/motd and whiteouts /etc/removed-in-layer2', async () => {
  const env = testEnv();
  const repo = env.imageLayered.slice(env.imageLayered.indexOf('/') + 1, env.imageLayered.lastIndexOf(':'));
  const manifest = await getJson<Manifest>(manifestUrl(env.imageLayered), OCI_MANIFEST);
  const [base, top] = manifest.body.layers;
  assert.ok(base && top);
  const blob = async (digest: string): Promise<Buffer> => {
    const res = await request(`http://${env.registry}/v2/${repo}/blobs/${digest}`);
    assert.equal(res.statusCode, 200, `blob ${digest}`);
    return gunzipSync(Buffer.from(await res.body.arrayBuffer()));
  };
  const topNames = tarNames(await blob(top.digest)).map((n) => n.replace(/^\.?\//, ''));
  assert.ok(topNames.includes('etc/motd'), topNames.join(', '));
  assert.ok(topNames.includes('etc/.wh.removed-in-layer2'), topNames.join(', '));
  const baseNames = tarNames(await blob(base.digest)).map((n) => n.replace(/^\.?\//, ''));
  for (const name of ['bin/busybox', 'bin/sh', 'etc/passwd', 'etc/group', 'etc/hostname', 'etc/removed-in-layer2', 'tmp/', 'root/']) {
    assert.ok(baseNames.includes(name), `base layer lacks ${name}`);
  }
});

test('test-services.sh refuses a port held by a process that is not a monocore test service', async (t) => {
  const server = createServer((sock) => sock.end('not redis\r\n'));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  // Async: the fake server must keep answering while the script probes it.
  const r = await promisify(execFile)('bash', [join(repoRoot, 'scripts', 'test-services.sh'), 'start'], {
    env: { ...process.env, MONOCORE_TEST_REDIS_PORT: String(port) },
    encoding: 'utf8',
    timeout: 60_000,
  }).then(
    () => ({ status: 0, stderr: '' }),
    (err: { code?: number; stderr?: string }) => ({ status: err.code, stderr: err.stderr ?? '' }),
  );
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`port 127\\.0\\.0\\.1:${port} is taken by something that is not monocore's test Redis`));
  assert.match(r.stderr, /MONOCORE_TEST_REDIS_PORT/);
});
