// The API over a Redis outage, with its own redis-server (AOF on) so the test
// can stop and restart it: /healthz and the routes answer 503
// MC_API_REDIS_UNAVAILABLE while Redis is down (/metrics still answers, with
// monocore_cluster_up 0), the API reconnects by itself, and the state written
// before the outage is all there afterwards.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { HostRegistry } from '@monocore/engine';
import { startApi, type RunningApi } from '@monocore/api';
import { tempDir, waitFor } from '../support/env.js';

const dir = tempDir('api-redis-outage-');
let redis: ChildProcess | undefined;
let api: RunningApi | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

function startRedis(port: number): ChildProcess {
  return spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], {
    stdio: 'ignore',
  });
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

after(async () => {
  await api?.close();
  if (redis) await stopRedis(redis);
  rmSync(dir, { recursive: true, force: true });
});

test('Redis goes away and comes back: 503 MC_API_REDIS_UNAVAILABLE meanwhile, then the same state', async () => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  redis = startRedis(port);
  await waitFor(async () => {
    const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } finally {
      r.disconnect();
    }
  }, { what: 'redis-server to start', timeoutMs: 15_000 });

  const setup = new Redis(url);
  await new HostRegistry(setup).register({ id: 'outage-host', cpus: 4, ramMib: 8192, backends: ['qemu'] }, 600_000);
  setup.disconnect();
  api = await startApi({ redisUrl: url, host: '127.0.0.1', port: 0 });
  const up = await fetch(`${api.url}/up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service: [{ name: 'kept', base: 'busybox' }] }),
  });
  assert.equal(up.status, 202);

  await stopRedis(redis);
  const health = await fetch(`${api.url}/healthz`);
  assert.equal(health.status, 503);
  assert.equal(((await health.json()) as { code: string }).code, 'MC_API_REDIS_UNAVAILABLE');
  const status = await fetch(`${api.url}/status`);
  assert.equal(status.status, 503);
  const body = (await status.json()) as { code: string; message: string };
  assert.equal(body.code, 'MC_API_REDIS_UNAVAILABLE');
  assert.doesNotMatch(body.message, /maxRetriesPerRequest|ioredis/);
  const hosts = await fetch(`${api.url}/hosts`);
  assert.equal(hosts.status, 503);
  // A scrape still answers: the process's own metrics, and monocore_cluster_up 0 to alert on.
  const scrape = await fetch(`${api.url}/metrics`);
  assert.equal(scrape.status, 200);
  const exposition = await scrape.text();
  assert.match(exposition, /^monocore_cluster_up 0$/m);
  assert.match(exposition, /^process_cpu_seconds_total \d/m);
  assert.doesNotMatch(exposition, /^monocore_services\{/m, 'no cluster numbers it could not read');

  redis = startRedis(port);
  await waitFor(async () => (await fetch(`${api!.url}/healthz`)).status === 200, { what: 'the API to reconnect', timeoutMs: 30_000, intervalMs: 200 });
  const after = await waitFor(async () => {
    const r = await fetch(`${api!.url}/status`);
    return r.status === 200 ? ((await r.json()) as { services: Array<{ name: string; desired: string }> }) : undefined;
  }, { what: '/status to answer again', timeoutMs: 30_000, intervalMs: 200 });
  assert.deepEqual(after.services.map((s) => [s.name, s.desired]), [['kept', 'running']]);
  const again = await (await fetch(`${api.url}/metrics`)).text();
  assert.match(again, /^monocore_cluster_up 1$/m);
  assert.match(again, /^monocore_services\{state="pending"\} 1$/m);
  assert.match(again, /^monocore_deployments_total\{kind="up"\} 1$/m, 'recorded before the outage, kept in Redis');
  const listed = (await (await fetch(`${api.url}/hosts`)).json()) as { hosts: Array<{ id: string; alive: boolean }> };
  assert.deepEqual(listed.hosts.map((h) => [h.id, h.alive]), [['outage-host', true]]);
});
