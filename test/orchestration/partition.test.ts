// A partition between one worker host and Redis, with the worker itself healthy:
// worker hA reaches Redis only through a TCP forwarder the test freezes (SIGSTOP),
// worker hB reaches it directly. Real Redis and BullMQ, two worker processes, real
// QEMU microVMs under TCG. A watcher samples the live QEMU processes of the service
// at 10 Hz for the whole test: no sample may show two copies. Lease 4 s, so (see
// leaseTiming): renewals every 1 s, fence after 3 s, a blip under 2 s kills nothing.
// Boots: 2 (hA, then hB after the failover).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Keys, Orchestrator, leaseTiming } from '@monocore/engine';
import { TEST_REDIS_DBS } from '../support/env.js';
import { Partition } from '../support/partition.js';
import { CopyWatcher, allEvents, byName, freshDb, quiet, removeDir, sleep, spawnWorkerProcess, svc, tempHome, until, vmEnv } from './support.js';

vmEnv(); // MONOCORE_KERNEL_DIR for the spawned workers; loud failure when the test services are down
const DB = TEST_REDIS_DBS['orchestration/partition'];
const LEASE_MS = 4000;
const timing = leaseTiming(LEASE_MS);

const cleanup: Array<() => unknown> = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

function spawnWorker(url: string, hostId: string, home: string, ramMib: number): void {
  const child = spawnWorkerProcess({ redisUrl: url, hostId, home, ramMib, cpus: 8, leaseMs: LEASE_MS });
  cleanup.push(() => child.exitCode === null && child.kill('SIGKILL'));
}

test('a worker partitioned from Redis kills its VM before its lease can expire; the other host takes over; never two copies, before or after the heal', async () => {
  const url = await freshDb(DB);
  const target = new URL(url);
  const partition = await Partition.start(`${target.hostname}:${target.port}`);
  cleanup.push(() => partition.close());
  const viaProxy = `redis://127.0.0.1:${partition.port}${target.pathname}`;
  const homeA = tempHome('pA');
  const homeB = tempHome('pB');
  cleanup.push(() => removeDir(homeA), () => removeDir(homeB));
  const orch = new Orchestrator({ redisUrl: url, logger: quiet, jobs: { startBackoffMs: 100, gatePollMs: 500 } });
  cleanup.push(() => orch.close());
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  cleanup.push(() => redis.quit());

  // hA has more free RAM, so placement puts the service there first.
  spawnWorker(viaProxy, 'hA', homeA, 1024);
  spawnWorker(url, 'hB', homeB, 512);
  await until('both hosts registered', async () => (await orch.hosts.alive()).length === 2, 60_000);
  const up = await orch.up({ service: [svc('p0', { ram: 256 })] }, { wait: true, timeoutMs: 120_000 });
  const first = byName(up.services).p0!;
  assert.equal(first.status, 'running', JSON.stringify(first));
  assert.equal(first.host, 'hA');

  const watcher = new CopyWatcher(['p0'], [homeA, homeB]);
  cleanup.push(() => watcher.stop());
  const pidA = first.pid!;
  assert.deepEqual(watcher.sample().get('p0'), [pidA], 'the recorded pid is the live QEMU process');

  // 1. A blip shorter than the margin: nothing is killed, nothing moves.
  const renewedAfter = async (ms: number): Promise<boolean> => (await redis.pttl(Keys.lease('p0'))) > LEASE_MS - ms;
  partition.cut();
  await sleep(timing.marginMs - 200); // the fault itself: Redis unreachable from hA for this long
  partition.heal();
  await until('hA renews the lease after the blip', () => renewedAfter(timing.renewEveryMs / 2), 10_000, 20);
  const afterBlip = byName(await orch.status()).p0!;
  assert.equal(afterBlip.host, 'hA');
  assert.equal(afterBlip.pid, pidA, 'the blip killed nothing');
  assert.deepEqual(watcher.sample().get('p0'), [pidA]);

  // 2. A real partition: hA is cut off from Redis and stays cut off.
  const cutAt = Date.now();
  partition.cut();
  const moved = await until(
    'p0 running on hB',
    async () => {
      const s = byName(await orch.status()).p0;
      return s?.status === 'running' && s.host === 'hB' ? s : undefined;
    },
    90_000,
    100,
  );
  const a = watcher.seen.get('p0')!.get(pidA)!;
  const b = watcher.seen.get('p0')!.get(moved.pid!);
  assert.ok(b, 'the watcher saw hB\'s copy');
  console.log(
    `# hA's VM last seen ${a.last - cutAt} ms after the cut (fence ${timing.fenceAfterMs} ms, lease ${LEASE_MS} ms); ` +
      `hB's first seen ${b.first - cutAt} ms after the cut`,
  );
  assert.ok(a.last < b.first, 'hA\'s copy was gone before hB\'s appeared');
  // Stay partitioned a while longer: hA must not boot anything meanwhile.
  await sleep(LEASE_MS);

  // 3. Heal: hA finds its lease gone and the service moved; nothing doubles.
  partition.heal();
  await until('hA registered again', async () => (await orch.hosts.alive()).some((h) => h.id === 'hA'), 30_000);
  await sleep(2 * LEASE_MS); // observe: hA reclaims nothing (its fenced service belongs to hB now)
  watcher.stop();
  const final = byName(await orch.status()).p0!;
  assert.equal(final.host, 'hB');
  assert.equal(final.pid, moved.pid, 'hB\'s copy kept running through the heal');
  assert.deepEqual(watcher.sample().get('p0'), [moved.pid]);
  assert.deepEqual(watcher.violations, [], `never two copies (${watcher.samples} samples at 10 Hz)`);
  assert.ok(watcher.samples > 100, `the watcher sampled the whole test (${watcher.samples})`);
  const lost = (await allEvents(orch)).filter((e) => e.service === 'p0' && e.to === 'lost');
  assert.equal(lost.length, 1, 'p0 was declared lost once (hA stopped heartbeating)');
});
