// Redis restarts under running services: a private redis-server (the shared test
// Redis is not restarted), a worker process booting real QEMU microVMs (its normal
// backend; kernel from MONOCORE_KERNEL_DIR, the busybox test image pulled by its
// puller), the API-side Orchestrator. Lease 4 s (leaseTiming: fence after 3 s; an
// outage under 2 s kills nothing).
// 1. A short, graceful restart: nothing is lost, the same QEMU processes keep running. 3 boots.
// 2. SIGKILL with production persistence (AOF everysec) while services run and a
//    deployment is in flight, down longer than the fence time: the worker fences its
//    VMs; once Redis is back every desired service runs exactly once again, the
//    deployment completes, never two copies (10 Hz watcher). ~8 boots.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { Keys, Orchestrator } from '@monocore/engine';
import { CopyWatcher, byName, freePort, quiet, redisAnswers, redisServerArgs, removeDir, sleep, spawnWorkerProcess, svc, tempHome, until, vmCopies, vmEnv } from './support.js';

vmEnv(); // MONOCORE_KERNEL_DIR for the spawned worker; loud failure when the test services are down
const cleanup: Array<() => void> = [];
after(() => cleanup.reverse().forEach((f) => f()));

function startRedis(port: number, dir: string, fsync: 'always' | 'everysec' = 'always'): ChildProcess {
  const r = spawn('redis-server', redisServerArgs(port, dir, fsync), { stdio: 'ignore' });
  cleanup.push(() => r.exitCode === null && r.kill('SIGKILL'));
  return r;
}

/** A private Redis's port, data dir and URL (not started) and a worker home; both dirs removed at the end. */
async function setup(tag: string, hostId: string): Promise<{ port: number; dir: string; home: string; url: string }> {
  const port = await freePort();
  const dir = tempHome(`redis-${tag}`);
  const home = tempHome(hostId);
  cleanup.push(() => removeDir(dir), () => removeDir(home));
  return { port, dir, home, url: `redis://127.0.0.1:${port}` };
}

function startWorkerProcess(url: string, hostId: string, home: string): ChildProcess {
  const worker = spawnWorkerProcess({ redisUrl: url, hostId, home, ramMib: 4096 });
  cleanup.push(() => worker.exitCode === null && worker.kill('SIGKILL'));
  return worker;
}

test('Redis restarts briefly (AOF) while services run: worker and API reconnect, nothing is lost or killed', async () => {
  const { port, dir, home, url } = await setup('r', 'hR');
  let redis = startRedis(port, dir);
  await until('redis up', () => redisAnswers(url), 10_000);

  const worker = startWorkerProcess(url, 'hR', home);
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

  // Graceful shutdown (AOF fsynced on every write), down for well under the blip tolerance.
  redis.kill('SIGTERM');
  await new Promise((r) => redis.once('exit', r));
  await assert.rejects(orch.status(), 'the API reports Redis errors while it is down');
  await sleep(500); // the fault: Redis away for this long
  redis = startRedis(port, dir);
  await until('redis back', () => redisAnswers(url), 10_000);

  // The API reconnects by itself; the worker keeps its services (same processes, same host).
  const after1 = await until('status after restart', async () => byName(await orch.status()), 15_000);
  for (const n of ['r1', 'r2']) {
    assert.equal(after1[n]?.status, 'running', `${n} after restart: ${JSON.stringify(after1[n])}`);
    assert.equal(after1[n]?.pid, before[n]?.pid, `${n} kept its process`);
  }
  await until('host alive again', async () => (await orch.hosts.alive()).some((h) => h.id === 'hR'), 10_000);
  const probe = new Redis(url, { maxRetriesPerRequest: 1 });
  cleanup.push(() => probe.disconnect());
  for (const n of ['r1', 'r2']) {
    await until(`${n}'s lease renewed after the restart`, async () => (await probe.pttl(Keys.lease(n))) > 3000, 10_000, 20);
  }
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

test('Redis SIGKILLed (AOF everysec) with a deployment in flight, down longer than the fence time: VMs are fenced, then every desired service runs exactly once again', async () => {
  const { port, dir, home, url } = await setup('k', 'hK');
  let redis = startRedis(port, dir, 'everysec');
  await until('redis up', () => redisAnswers(url), 10_000);
  const worker = startWorkerProcess(url, 'hK', home);
  const orch = new Orchestrator({ redisUrl: url, logger: quiet, jobs: { startBackoffMs: 200, gatePollMs: 500 } });
  cleanup.push(() => void orch.close());
  await until('worker registered', async () => (await orch.hosts.alive()).length === 1, 60_000);

  const names = ['k1', 'k2', 'k3', 'k4'];
  const base = [svc('k1'), svc('k2', { depends_on: ['k1'] })];
  const first = await orch.up({ service: base }, { wait: true, timeoutMs: 120_000 });
  for (const s of first.services) assert.equal(s.status, 'running', JSON.stringify(s));
  const watcher = new CopyWatcher(names, [home]);
  cleanup.push(() => watcher.stop());

  // A deployment in flight: k3 (after k2) and k4 are being pulled and booted when Redis dies.
  const inFlight = await orch.up({ service: [...base, svc('k3', { depends_on: ['k2'] }), svc('k4')] });
  const acceptedAt = Date.now();
  await until('the new services are in flight', async () => {
    const st = byName(await orch.status());
    return ['pending', 'pulling', 'starting'].includes(st.k3?.status ?? '') ? st : undefined;
  }, 30_000, 20);
  // AOF everysec may lose the last second: kill after the request itself was flushed.
  await sleep(Math.max(0, 1200 - (Date.now() - acceptedAt)));
  redis.kill('SIGKILL');
  await new Promise((r) => redis.once('exit', r));
  const killedAt = Date.now();
  await until('the worker fenced its running VMs', async () => vmCopies(['k1', 'k2'], [home]).get('k1')!.length === 0 && vmCopies(['k1', 'k2'], [home]).get('k2')!.length === 0, 30_000, 50);
  console.log(`# VMs fenced ${Date.now() - killedAt} ms after Redis died (fence time 3000 ms)`);
  redis = startRedis(port, dir, 'everysec');
  await until('redis back', () => redisAnswers(url), 10_000);

  const outcome = await orch.waitFor(inFlight.deploymentId, { timeoutMs: 180_000 });
  const final = await until(
    'every desired service running once',
    async () => {
      const st = byName(await orch.status());
      const copies = vmCopies(names, [home]);
      return names.every((n) => st[n]?.status === 'running' && copies.get(n)!.length === 1 && copies.get(n)![0] === st[n]!.pid) ? st : undefined;
    },
    120_000,
    200,
  );
  console.log(`# all ${names.length} services running once ${Date.now() - killedAt} ms after Redis was killed`);
  assert.equal(outcome.ok, true, `the in-flight deployment completed: ${JSON.stringify(outcome.services.map((s) => [s.name, s.status]))}`);
  for (const n of ['k1', 'k2']) assert.notEqual(final[n]!.pid, byName(first.services)[n]!.pid, `${n} was fenced and booted again`);
  watcher.stop();
  assert.deepEqual(watcher.violations, [], `never two copies (${watcher.samples} samples)`);
  worker.kill('SIGTERM');
  await new Promise((r) => (worker.exitCode !== null ? r(null) : worker.once('exit', r)));
  await orch.close();
});

test('a worker started while Redis is down waits for it (no exit), then registers and takes work', async () => {
  const { port, dir, home, url } = await setup('late', 'hL');
  const worker = startWorkerProcess(url, 'hL', home);
  let stderr = '';
  worker.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // Long enough for the first connect to fail and be retried several times.
  await sleep(4000);
  assert.equal(worker.exitCode, null, `the worker exited while Redis was down: ${stderr}`);
  startRedis(port, dir);
  await until('redis up', () => redisAnswers(url), 10_000);
  const orch = new Orchestrator({ redisUrl: url, logger: quiet });
  cleanup.push(() => void orch.close());
  await until('the worker registered', async () => (await orch.hosts.alive()).length === 1, 60_000);
  const up = await orch.up({ service: [svc('late1')] }, { wait: true, timeoutMs: 120_000 });
  assert.equal(byName(up.services).late1?.status, 'running', JSON.stringify(up.services));
  await orch.down({ wait: true, timeoutMs: 60_000 });
  worker.kill('SIGTERM');
  await new Promise((r) => (worker.exitCode !== null ? r(null) : worker.once('exit', r)));
  await orch.close();
});
