// Two worker PROCESSES acting as two hosts (separate MONOCORE_HOME), real Redis
// and BullMQ, real QEMU microVMs (the workers' normal backend; the kernel from
// MONOCORE_KERNEL_DIR, the busybox test image pulled by each worker's puller).
// Every live VM of a service is seen in /proc: a qemu-system process whose
// command line names the service's state dir in one of the test's homes.
// Boots: 10 + 3 + 4 (TCG, ~2 s each).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { JobIds, Orchestrator, QUEUE_PREFIX, QueueNames } from '@monocore/engine';
import { TEST_REDIS_DBS } from '../support/env.js';
import { allEvents, byName, freshDb, quiet, removeDir, sleep, spawnWorkerProcess, svc, tempHome, until, vmCopies, vmEnv } from './support.js';

vmEnv(); // MONOCORE_KERNEL_DIR for the spawned workers; loud failure when the test services are down
const DB = TEST_REDIS_DBS['orchestration/multihost'];
// Leases are kept short, but not so short that a node event loop starved by TCG boots on 2 cores misses its
// renewals (heartbeat every 1 s, fence after 3 s, lease TTL 4 s: leaseTiming()).
const TTL_MS = 4000;

const children: ChildProcess[] = [];
const homes: string[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const h of homes) removeDir(h);
});

function spawnWorker(url: string, hostId: string, home: string, ramMib: number, leaseMs = TTL_MS): ChildProcess {
  const child = spawnWorkerProcess({ redisUrl: url, hostId, home, ramMib, leaseMs });
  children.push(child);
  return child;
}

/** pids of the live QEMU processes of each service, on any host of this test. */
const copies = (names: string[]): Map<string, number[]> => vmCopies(names, homes);

const exited = (c: ChildProcess) =>
  new Promise<number | null>((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code))));

test('two hosts: spread by capacity; kill -9 one → its services lost, then running on the other, never twice; SIGTERM hands back', async () => {
  const url = await freshDb(DB);
  const orch = new Orchestrator({ redisUrl: url, logger: quiet, jobs: { startBackoffMs: 100, gatePollMs: 500 } });
  try {
    const homeA = tempHome('hA');
    const homeB = tempHome('hB');
    homes.push(homeA, homeB);
    const a = spawnWorker(url, 'hA', homeA, 512);
    spawnWorker(url, 'hB', homeB, 1024);
    await until('both hosts registered', async () => (await orch.hosts.alive()).length === 2, 60_000);

    const names = [0, 1, 2, 3].map((i) => `s${i}`);
    const markers = names;
    const config = {
      service: names.map((n, i) => svc(n, { ram: 256, ...(i > 0 ? { depends_on: ['s0'] } : {}) })),
    };
    const up = await orch.up(config, { wait: true, timeoutMs: 120_000 });
    for (const s of up.services) assert.equal(s.status, 'running', JSON.stringify(s));
    const placed = byName(up.services);
    const onA = names.filter((n) => placed[n]?.host === 'hA');
    const onB = names.filter((n) => placed[n]?.host === 'hB');
    assert.ok(onA.length > 0 && onB.length > 0, `spread over both hosts: A=${onA} B=${onB}`);
    assert.ok(onA.length * 256 <= 512 && onB.length * 256 <= 1024, 'capacity respected');
    assert.ok(onB.length >= onA.length, 'the larger host takes at least as many');
    for (const [m, pids] of copies(markers)) assert.equal(pids.length, 1, `service ${m} runs once`);

    // Watch every copy of every service from now on.
    let violations: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const [m, pids] of copies(markers)) if (pids.length > 1) violations.push(`${m}: ${pids.join(',')}`);
        await sleep(20);
      }
    })();

    const killedAt = Date.now();
    a.kill('SIGKILL');
    await exited(a);
    const recovered = await until(
      'services of hA running on hB',
      async () => {
        const st = byName(await orch.status());
        return names.every((n) => st[n]?.status === 'running' && st[n]?.host === 'hB') ? st : undefined;
      },
      TTL_MS + 60_000,
      200,
    );
    const took = Date.now() - killedAt;
    console.log(`# failover of ${onA.length} services: ${took} ms (lease TTL ${TTL_MS} ms)`);
    const events = await allEvents(orch);
    for (const n of onA) {
      const lost = events.findIndex((e) => e.service === n && e.to === 'lost');
      const back = events.findIndex((e, i) => i > lost && e.service === n && e.to === 'running' && e.host === 'hB');
      assert.ok(lost >= 0 && back > lost, `${n}: lost then running on hB`);
      assert.ok((recovered[n]?.pid ?? 0) > 0);
    }
    for (const n of onB) assert.equal(recovered[n]?.pid, placed[n]?.pid, `${n} on the surviving host was not touched`);

    // A restarted worker on hA's home comes back; SIGTERM to hB hands its services to hA.
    spawnWorker(url, 'hA', homeA, 1024);
    await until('hA back', async () => (await orch.hosts.alive()).some((h) => h.id === 'hA'), 60_000);
    const b = children[1]!;
    b.kill('SIGTERM');
    assert.equal(await exited(b), 0, 'graceful exit');
    await until(
      'everything running on hA',
      async () => {
        const st = byName(await orch.status());
        return names.every((n) => st[n]?.status === 'running' && st[n]?.host === 'hA');
      },
      90_000,
      200,
    );
    watching = false;
    await watcher;
    assert.deepEqual(violations, [], 'no service ever ran twice at once');
    violations = [];
    for (const [m, pids] of copies(markers)) assert.equal(pids.length, 1, `service ${m} runs once at the end`);
    await orch.down({ wait: true, timeoutMs: 60_000 });
    await until('no copies left', async () => [...copies(markers).values()].every((p) => p.length === 0), 20_000);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await Promise.all(children.map(exited));
    await orch.close();
  }
});

test('a host dies with its jobs still queued: the flow does not hang, the dependency moves and its dependents follow', async () => {
  const url = await freshDb(TEST_REDIS_DBS['orchestration/multihost:queued']);
  const orch = new Orchestrator({ redisUrl: url, logger: quiet, jobs: { startBackoffMs: 100, gatePollMs: 500 } });
  const first = children.length;
  try {
    const homeA = tempHome('qA');
    const homeB = tempHome('qB');
    homes.push(homeA, homeB);
    // qA's longer lease keeps the frozen host "alive" (its heartbeat key) for 12 s: time enough
    // to see dep queued there before the reaper declares qA lost and moves it.
    const A_LEASE_MS = 12_000;
    const a = spawnWorker(url, 'qA', homeA, 1024, A_LEASE_MS);
    spawnWorker(url, 'qB', homeB, 768);
    await until('both hosts registered', async () => (await orch.hosts.alive()).length === 2, 60_000);
    // Freeze A: it still looks alive (until its heartbeat TTL), so `dep` is placed there, but it takes no job.
    a.kill('SIGSTOP');
    const config = {
      service: [
        svc('dep', { ram: 512 }),
        svc('mid', { ram: 128, group: 'g', depends_on: ['dep'] }),
        svc('top', { ram: 128, group: 'g', depends_on: ['mid'] }),
      ],
      group: [{ name: 'g' }],
    };
    const up = await orch.up(config);
    const placed = Object.fromEntries(up.plan.map((p) => [p.name, p.host]));
    assert.deepEqual(placed, { dep: 'qA', mid: 'qB', top: 'qB' });
    // The frozen host's queue holds dep's start job (the flow was expanded by qB's worker), behind
    // its pull job on qA's puller (waiting-children) — nothing runs it.
    const conn = new Redis(url, { maxRetriesPerRequest: 1 });
    const hostA = new Queue(QueueNames.host('qA'), { connection: conn, prefix: QUEUE_PREFIX });
    await until('dep queued on the frozen host', async () => ['waiting', 'waiting-children'].includes(await hostA.getJobState(JobIds.start(up.deploymentId, 'dep'))), 30_000);
    await hostA.close();
    await conn.quit();
    const waiting = byName(await orch.status());
    assert.equal(waiting.dep?.status, 'pending', 'dep waits in the frozen host queue');
    // mid's image pull (on qB) may run; its boot waits for dep.
    assert.ok(['pending', 'pulling'].includes(waiting.mid?.status ?? ''), `mid waits for dep: ${waiting.mid?.status}`);
    assert.equal(waiting.mid?.startedAt, undefined, 'mid has not booted');
    a.kill('SIGKILL');
    await exited(a);
    const st = await until(
      'dep moved to qB and the chain running',
      async () => {
        const s = byName(await orch.status());
        return ['dep', 'mid', 'top'].every((n) => s[n]?.status === 'running' && s[n]?.host === 'qB') ? s : undefined;
      },
      A_LEASE_MS + 90_000,
      200,
    );
    const t = (n: string) => Date.parse(st[n]!.startedAt!);
    assert.ok(t('dep') <= t('mid') && t('mid') <= t('top'), 'start order kept after the move');
    const outcome = await orch.waitFor(up.deploymentId, { timeoutMs: 10_000 });
    assert.equal(outcome.ok, true);
    for (const [m, pids] of copies(['dep', 'mid', 'top'])) assert.equal(pids.length, 1, `${m} runs once`);
    await orch.down({ wait: true, timeoutMs: 60_000 });
  } finally {
    for (const c of children.slice(first)) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      c.kill('SIGCONT'); // a stopped process would hold SIGTERM pending for ever
      c.kill('SIGTERM');
    }
    await Promise.all(children.slice(first).map(exited));
    await orch.close();
  }
});

test('a worker killed and restarted on the same host boots its services again there (old processes gone)', async () => {
  const url = await freshDb(TEST_REDIS_DBS['orchestration/multihost:restart']);
  const orch = new Orchestrator({ redisUrl: url, logger: quiet, jobs: { startBackoffMs: 100, gatePollMs: 500 } });
  const first = children.length;
  try {
    const home = tempHome('rA');
    homes.push(home);
    const w1 = spawnWorker(url, 'rA', home, 1024);
    await until('host registered', async () => (await orch.hosts.alive()).length === 1, 60_000);
    const markers = ['x1', 'x2'];
    const up = await orch.up({ service: [svc('x1'), svc('x2', { depends_on: ['x1'] })] }, { wait: true, timeoutMs: 120_000 });
    for (const [m, pids] of copies(markers)) assert.equal(pids.length, 1, `${m} runs once`);
    const before = byName(up.services);
    w1.kill('SIGKILL');
    await exited(w1);
    // The parent-death signal took the services with it.
    await until('old VMs gone', async () => [...copies(markers).values()].every((p) => p.length === 0), 10_000);
    spawnWorker(url, 'rA', home, 1024);
    const after = await until(
      'services running again on rA',
      async () => {
        const s = byName(await orch.status());
        return ['x1', 'x2'].every((n) => s[n]?.status === 'running' && s[n]?.host === 'rA' && s[n]?.pid !== before[n]?.pid) ? s : undefined;
      },
      90_000,
      200,
    );
    for (const [m, pids] of copies(markers)) assert.deepEqual(pids.length, 1, `${m} runs once`);
    assert.ok(Date.parse(after.x1!.startedAt!) <= Date.parse(after.x2!.startedAt!), 'dependency order kept on recovery');
    const events = await allEvents(orch);
    assert.ok(!events.some((e) => e.to === 'lost'), 'a quick restart is not a lost host');
    await orch.down({ wait: true, timeoutMs: 60_000 });
  } finally {
    for (const c of children.slice(first)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all(children.slice(first).map(exited));
    await orch.close();
  }
});
