// Restart Redis (AOF on) under running services: a private redis-server (the
// shared test Redis is not restarted), a worker process booting real QEMU
// microVMs (its normal backend; kernel from MONOCORE_KERNEL_DIR, the busybox
// test image pulled by its puller), the API-side Orchestrator. Nothing may be
// lost: state, jobs, services (the same QEMU processes keep running). 3 boots.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Orchestrator } from '@monocore/engine';
import { byName, quiet, removeDir, sleep, svc, tempHome, until, vmCopies, vmEnv } from './support.js';

vmEnv(); // MONOCORE_KERNEL_DIR for the spawned worker; loud failure when the test services are down
const workerMain = fileURLToPath(new URL('../../../apps/worker/dist/main.js', import.meta.url));
const cleanup: Array<() => void> = [];
after(() => cleanup.reverse().forEach((f) => f()));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function startRedis(port: number, dir: string): ChildProcess {
  const r = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  cleanup.push(() => r.exitCode === null && r.kill('SIGKILL'));
  return r;
}

async function ping(url: string): Promise<boolean> {
  const c = new Redis(url, { maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

test('Redis restarts (AOF) while services run: worker and API reconnect, nothing is lost', async () => {
  const port = await freePort();
  const dir = tempHome('redis');
  const home = tempHome('hR');
  cleanup.push(() => removeDir(dir), () => removeDir(home));
  const url = `redis://127.0.0.1:${port}`;
  let redis = startRedis(port, dir);
  await until('redis up', () => ping(url), 10_000);

  const worker = spawn(process.execPath, [workerMain], {
    env: {
      ...process.env,
      MONOCORE_REDIS_URL: url,
      MONOCORE_HOST_ID: 'hR',
      MONOCORE_HOME: home,
      MONOCORE_LEASE_MS: '4000',
      MONOCORE_LOG_LEVEL: process.env.MONOCORE_TEST_LOG ?? 'fatal',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  cleanup.push(() => worker.exitCode === null && worker.kill('SIGKILL'));
  const orch = new Orchestrator({ redisUrl: url, logger: quiet, jobs: { startBackoffMs: 200, gatePollMs: 500 } });
  cleanup.push(() => void orch.close());
  await until('worker registered', async () => (await orch.hosts.alive()).length === 1, 60_000);

  const config = { service: [svc('r1'), svc('r2', { depends_on: ['r1'] })] };
  const first = await orch.up(config, { wait: true, timeoutMs: 120_000 });
  const before = byName(first.services);
  for (const n of ['r1', 'r2']) assert.equal(before[n]?.status, 'running');
  const vms = () => vmCopies(['r1', 'r2', 'r3'], [home]);
  const vms0 = vms();
  for (const n of ['r1', 'r2']) {
    assert.equal(vms0.get(n)!.length, 1, `${n} has one VM`);
    assert.equal(vms0.get(n)![0], before[n]?.pid, `${n}: the recorded pid is its QEMU process`);
  }

  // Graceful shutdown (AOF fsynced on every write), then 3 s down: longer than the heartbeat TTL.
  redis.kill('SIGTERM');
  await new Promise((r) => redis.once('exit', r));
  await assert.rejects(orch.status(), 'the API reports Redis errors while it is down');
  await sleep(3000);
  redis = startRedis(port, dir);
  await until('redis back', () => ping(url), 10_000);

  // The API reconnects by itself; the worker keeps its services (same processes, same host).
  const after1 = await until('status after restart', async () => byName(await orch.status()), 15_000);
  for (const n of ['r1', 'r2']) {
    assert.equal(after1[n]?.status, 'running', `${n} after restart: ${JSON.stringify(after1[n])}`);
    assert.equal(after1[n]?.pid, before[n]?.pid, `${n} kept its process`);
  }
  await until('host alive again', async () => (await orch.hosts.alive()).some((h) => h.id === 'hR'), 10_000);
  await sleep(1500); // a few heartbeats: the leases are renewed, nothing gets rescheduled
  const after2 = byName(await orch.status());
  for (const n of ['r1', 'r2']) assert.equal(after2[n]?.pid, before[n]?.pid, `${n} not restarted`);
  assert.deepEqual(vms(), vms0, 'the same QEMU processes kept running');

  // Queues work again: a new service and a down go through the same worker.
  const more = await orch.up({ service: [...config.service, svc('r3', { depends_on: ['r2'] })] }, { wait: true, timeoutMs: 120_000 });
  assert.equal(byName(more.services).r3?.status, 'running');
  assert.deepEqual(more.plan.filter((p) => p.action !== 'unchanged').map((p) => p.name), ['r3']);
  const down = await orch.down({ wait: true, timeoutMs: 60_000 });
  assert.deepEqual(down.order, ['r3', 'r2', 'r1']);
  for (const s of down.services) assert.equal(s.status, 'stopped');
  await until('no VM left', async () => [...vms().values()].every((p) => p.length === 0), 20_000);
  worker.kill('SIGTERM');
  await new Promise((r) => (worker.exitCode !== null ? r(null) : worker.once('exit', r)));
  await orch.close();
});
