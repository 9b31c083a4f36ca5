// Scheduling on real Redis + BullMQ with the real worker (in process) booting
// real QEMU microVMs (TCG here, ~2 s a boot): one worker and one Orchestrator
// are shared by the checks below, which build on each other's deployment to
// keep the number of boots low (12 in this file). Each service's guest appends
// a line to a host volume when its command runs, so "started exactly once" is
// read from what the guests did, and the live QEMU processes of each service
// are counted in /proc.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allEvents, byName, harness, removeDir, svc, until, vmCopies, vmEnv, type Harness } from './support.js';
import { TEST_REDIS_DBS } from '../support/env.js';

const DB = TEST_REDIS_DBS['orchestration/scheduling'];
const env = vmEnv();
const out = mkdtempSync(join(tmpdir(), 'mc-orch-sched-'));

let shared: Harness | undefined;
after(async () => {
  if (shared) {
    await shared.orch.down({ wait: true, timeoutMs: 60_000 }).catch(() => undefined);
    await shared.close();
  }
  removeDir(out);
});
const homes = (): string[] => shared?.homes ?? [];
async function h(): Promise<Harness> {
  shared ??= await harness(DB);
  return shared;
}

/**
 * A VM whose command appends a line to /out/runs, then runs `then`. /out is the
 * host directory <out>/<name> (a host directory may be shared inside one group only).
 */
function stamped(name: string, extra: Record<string, unknown> = {}, then = 'exec sleep 3600'): Record<string, unknown> {
  mkdirSync(join(out, name), { recursive: true });
  return svc(name, {
    command: '/bin/sh',
    args: ['-c', `echo run >> /out/runs; ${then}`],
    volumes: [`${join(out, name)}:/out`],
    ...extra,
  });
}
const stamps = (name: string): number =>
  existsSync(join(out, name, 'runs')) ? readFileSync(join(out, name, 'runs'), 'utf8').split('\n').filter(Boolean).length : 0;
/** `running` means the guest started the command; its first write may land a moment later. */
async function stamped1(names: string[], count = 1): Promise<void> {
  await until(`stamps of ${names.join(', ')}`, async () => names.every((n) => stamps(n) >= count), 20_000);
}
const onceEach = (names: string[]): void => {
  for (const [n, pids] of vmCopies(names, homes())) assert.equal(pids.length, 1, `${n}: ${pids.length} live VMs (${pids.join(',')})`);
};

const TALK = 'for i in 1 2 3; do echo "line $i"; done; echo oops >&2; sleep 0.3; echo late; exec sleep 3600';
/** A diamond (g1: base <- left, right <- top, itself a three-level chain) plus an independent talker (g2). */
const config = (v: string) => ({
  service: [
    stamped('top', { group: 'g1', depends_on: ['left', 'right'] }),
    stamped('base', { group: 'g1' }),
    stamped('left', { group: 'g1', depends_on: ['base'] }),
    stamped('right', { group: 'g1', depends_on: ['base'] }),
    stamped('solo', { group: 'g2', envs: [`V=${v}`] }, TALK),
  ],
  group: [{ name: 'g1' }, { name: 'g2' }],
});
const G1 = ['base', 'left', 'right', 'top'];
const ALL = [...G1, 'solo'];

test('clear errors at the boundary: invalid config, no hosts, no capacity, unknown deployment, wait timeout', async () => {
  const e = await harness(DB, []);
  try {
    await assert.rejects(
      e.orch.up({ service: [{ name: 'a', cpus: 0 }, { name: 'b', depends_on: ['zz'] }] }),
      (err: unknown) => {
        const x = err as { code?: string; details?: { issues?: unknown[] } };
        return x.code === 'MC_CONFIG_INVALID' && (x.details?.issues?.length ?? 0) >= 2;
      },
    );
    await assert.rejects(e.orch.up({ service: [svc('a')] }), { code: 'MC_ORCH_NO_HOSTS' });
    // Valid config that no worker could boot: refused before anything is recorded, every offender named.
    await assert.rejects(e.orch.up({ service: [{ name: 'nobase' }, { name: 'nobase2' }] }), {
      code: 'MC_ORCH_NO_IMAGE',
      message: /service "nobase", service "nobase2" have no base image/,
    });
    assert.deepEqual(await e.orch.status(), [], 'nothing recorded for refused requests');
    await e.orch.hosts.register({ id: 'tiny', cpus: 1, ramMib: 256, backends: ['qemu'] }, 60_000);
    await assert.rejects(e.orch.up({ service: [svc('a', { ram: 512 })] }), (err: unknown) => {
      const x = err as { code?: string; message?: string };
      return x.code === 'MC_ORCH_NO_CAPACITY' && /service "a"/.test(x.message ?? '') && /tiny 1 cpus\/256 MiB/.test(x.message ?? '');
    });
    await assert.rejects(e.orch.waitFor('dnope'), { code: 'MC_ORCH_DEPLOYMENT_NOT_FOUND' });
    // A registered host that runs no worker: the request is accepted, and waiting times out clearly.
    await assert.rejects(e.orch.up({ service: [svc('a')] }, { wait: true, timeoutMs: 300 }), { code: 'MC_ORCH_TIMEOUT' });
  } finally {
    await e.close();
  }
});

test('a chain and a diamond start in dependency order (recorded timestamps), the shared dependency boots once, independent services in parallel; events stream live', async () => {
  const { orch } = await h();
  const ac = new AbortController();
  const seen: Array<{ id: string; service?: string; to?: string; kind: string }> = [];
  // Read from the stream's current end: every event of the up below is seen, however late the reader starts.
  const since = await orch.state.lastEventId();
  const reader = (async () => {
    for await (const ev of orch.events({ since, signal: ac.signal })) {
      seen.push(ev);
      if (ev.service === 'top' && ev.to === 'running') ac.abort();
    }
  })();
  const res = await orch.up(config('1'), { wait: true, timeoutMs: 120_000 });
  await reader;
  assert.deepEqual(Object.fromEntries(res.plan.map((p) => [p.name, p.level])), { base: 0, solo: 0, left: 1, right: 1, top: 2 });
  const s = byName(res.services);
  for (const n of ALL) assert.equal(s[n]?.status, 'running', `${n}: ${JSON.stringify(s[n])} (deployment ${res.deploymentId})`);
  await stamped1(ALL);
  for (const n of ALL) assert.equal(stamps(n), 1, `${n} ran its command ${stamps(n)} times`);
  onceEach(ALL);

  // Each dependent's boot began only after every dependency was running (host-recorded event times).
  const events = await allEvents(orch);
  const at = (n: string, to: string): number => {
    const e = events.find((x) => x.service === n && x.to === to);
    assert.ok(e, `${n} has a ${to} event`);
    return Date.parse(e.time);
  };
  for (const [dep, on] of [['left', 'base'], ['right', 'base'], ['top', 'left'], ['top', 'right']] as const) {
    assert.ok(at(dep, 'starting') >= at(on, 'running'), `${dep} started booting at ${at(dep, 'starting')}, before ${on} was running at ${at(on, 'running')}`);
  }
  const started = (n: string) => Date.parse(s[n]!.startedAt!);
  assert.ok(started('base') <= started('left') && started('left') <= started('top'), 'chain base -> left -> top');
  const starting = events.filter((e) => e.to === 'starting').map((e) => e.service);
  assert.deepEqual([...starting].sort(), [...ALL].sort(), 'every service booted exactly once');
  // The independent service did not wait for the chain: it booted before the chain's end was booting.
  assert.ok(at('solo', 'starting') < at('top', 'starting'), 'solo booted in parallel with the chain');
  assert.ok(events.some((e) => e.to === 'pulling'), 'pulling is visible while the pull runs');

  // Live events: top went starting -> running once; resuming from an id replays the rest.
  const trail = seen.filter((e) => e.service === 'top').map((e) => e.to);
  assert.deepEqual(trail.slice(-2), ['starting', 'running'], `top trail ${trail}`);
  assert.equal(trail.filter((t) => t === 'starting').length, 1);
  assert.ok(seen.some((e) => e.kind === 'deployment'));
  const first = seen[0]!;
  const replay: string[] = [];
  const ac2 = new AbortController();
  for await (const ev of orch.events({ since: first.id, signal: ac2.signal })) {
    replay.push(ev.id);
    if (replay.length === seen.length - 1) ac2.abort();
  }
  assert.deepEqual(replay, seen.slice(1).map((e) => e.id));

  // Heartbeats sample each running service's usage (/proc of its QEMU process).
  const sampled = await until('usage sampled', async () => {
    const [x] = await orch.status({ services: ['base'] });
    return x?.memoryBytes !== undefined && x.memoryBytes > 0 && x.cpuPercent !== undefined ? x : undefined;
  }, 20_000);
  assert.ok(sampled.memoryBytes! > 1_000_000 && sampled.cpuPercent! >= 0);
});

test('logs are readable through Redis (tail and follow)', async () => {
  const { orch, homes } = await h();
  const ac = new AbortController();
  const seen: string[] = [];
  const follow = (async () => {
    for await (const line of orch.logs('solo', { stream: 'stdout', tail: 2, follow: true, signal: ac.signal })) {
      seen.push(line);
      if (line === 'late') ac.abort();
    }
  })();
  await until('the late line', async () => seen.includes('late'), 20_000);
  ac.abort();
  await follow;
  const tail: string[] = [];
  for await (const l of orch.logs('solo', { stream: 'stdout', tail: 10 })) tail.push(l);
  assert.deepEqual(tail, ['line 1', 'line 2', 'line 3', 'late']);
  const err: string[] = [];
  for await (const l of orch.logs('solo', { stream: 'stderr' })) err.push(l);
  assert.deepEqual(err, ['oops']);
  // The host keeps the same lines in its rotating file.
  assert.match(readFileSync(join(homes[0]!, 'log', 'solo.stdout.log'), 'utf8'), /line 1\nline 2\nline 3\nlate\n/);
  await assert.rejects(async () => {
    for await (const _ of orch.logs('nope', { stream: 'stdout' })) void _;
  }, { code: 'MC_ORCH_UNKNOWN_SERVICE' });
});

test('up is idempotent: unchanged services are untouched, a changed one is restarted', async () => {
  const { orch } = await h();
  const before = byName(await orch.status());
  const again = await orch.up(config('1'), { wait: true, timeoutMs: 60_000 });
  assert.ok(again.plan.every((p) => p.action === 'unchanged'), JSON.stringify(again.plan));
  const same = byName(again.services);
  for (const n of ALL) assert.equal(same[n]?.pid, before[n]?.pid, `${n} kept its VM`);
  const changed = await orch.up(config('2'), { wait: true, timeoutMs: 120_000 });
  assert.deepEqual(
    Object.fromEntries(changed.plan.map((p) => [p.name, p.action])),
    { base: 'unchanged', left: 'unchanged', right: 'unchanged', top: 'unchanged', solo: 'restart' },
  );
  const now = byName(changed.services);
  const trail = async (n: string) => JSON.stringify((await allEvents(orch)).filter((e) => e.service === n));
  for (const n of G1) assert.equal(now[n]?.pid, before[n]?.pid, `unchanged ${n} kept its VM: ${await trail(n)}`);
  assert.notEqual(now.solo?.pid, before.solo?.pid, 'the changed service got a new VM');
  assert.equal(now.solo?.status, 'running');
  await stamped1(['solo'], 2);
  for (const n of G1) assert.equal(stamps(n), 1, `${n} ran once`);
  assert.equal(stamps('solo'), 2);
  await until('the old solo VM gone', async () => vmCopies(['solo'], homes()).get('solo')!.length === 1, 20_000);
  onceEach(ALL);
});

test('down stops dependents first; a group subset; remove deletes the state', async () => {
  const { orch } = await h();
  const mark = (await allEvents(orch)).length;
  const down = await orch.down({ group: 'g1', wait: true, timeoutMs: 60_000 });
  const ok = (order: string[]) => order.length === 4 && order[0] === 'top' && order[3] === 'base' && new Set(order).size === 4;
  assert.ok(ok(down.order), `down order ${down.order}`);
  const stopped = (await allEvents(orch)).slice(mark).filter((e) => e.to === 'stopped').map((e) => e.service!);
  assert.ok(ok(stopped), `stopped in order ${stopped}`);
  const s = byName(await orch.status());
  assert.equal(s.solo?.status, 'running', 'the other group is untouched');
  for (const n of G1) assert.equal(s[n]?.status, 'stopped');
  assert.equal(new Set(G1.map((n) => s[n]?.host)).size, 1, 'a group is never split');
  for (const [n, pids] of vmCopies(G1, homes())) assert.equal(pids.length, 0, `${n} VM still alive: ${pids}`);
  onceEach(['solo']);
  await orch.remove({ services: ['top'], wait: true, timeoutMs: 30_000 });
  assert.deepEqual((await orch.status()).map((x) => x.name).sort(), ['base', 'left', 'right', 'solo']);
  await assert.rejects(orch.status({ services: ['top'] }), { code: 'MC_ORCH_UNKNOWN_SERVICE' });
});

test('a failed dependency (boot or pull) leaves its dependents blocked with the reason; others run', async () => {
  const { orch } = await h();
  const missing = `${env.registry}/monocore-test/does-not-exist:latest`;
  const res = await orch.up(
    {
      service: [
        svc('broken', { command: '/nonexistent/monocore-test-cmd' }),
        svc('mid', { depends_on: ['broken'] }),
        svc('upper', { depends_on: ['mid'] }),
        svc('nopull', { base: missing }),
        svc('after', { depends_on: ['nopull'] }),
      ],
    },
    { wait: true, timeoutMs: 120_000 },
  );
  const s = byName(res.services);
  assert.equal(s.broken?.status, 'failed');
  assert.match(s.broken?.reason ?? '', /did not start.*exit code 127/);
  assert.equal(s.broken?.attempts, 2, 'the boot was retried (attempts + backoff) before failing');
  assert.equal(s.mid?.status, 'blocked');
  assert.equal(s.mid?.blockedBy, 'broken');
  assert.equal(s.upper?.status, 'blocked');
  assert.equal(s.upper?.blockedBy, 'mid');
  assert.equal(s.nopull?.status, 'failed');
  assert.match(s.nopull?.reason ?? '', /^pull failed: .*MC_OCI_MANIFEST_NOT_FOUND/);
  assert.equal(s.after?.status, 'blocked');
  assert.equal(s.after?.blockedBy, 'nopull');
  assert.equal((await orch.waitFor(res.deploymentId)).ok, false);
  for (const [n, pids] of vmCopies(['broken', 'mid', 'upper', 'nopull', 'after'], homes())) assert.equal(pids.length, 0, `${n}: ${pids}`);
  const others = byName(await orch.status({ services: ['solo'] }));
  assert.equal(others.solo?.status, 'running', 'services outside the request keep running');
});

test('a crash loop restarts with exponential backoff, then ends failed with exit code and log tail', async () => {
  const { orch } = await h();
  await orch.up({ service: [svc('crash', { command: '/bin/sh', args: ['-c', 'echo "boom $$" >&2; exit 3'], max_restarts: 3 })] });
  const failed = await until('crash to fail', async () => {
    const [x] = await orch.status({ services: ['crash'] });
    return x?.status === 'failed' ? x : undefined;
  }, 90_000, 200);
  assert.equal(failed.exitCode, 3);
  assert.equal(failed.restarts, 3);
  assert.match(failed.reason ?? '', /code 3 after 3 restarts/);
  assert.match(failed.logTail ?? '', /\[stderr\] boom \d+/);
  // Delays between an exit (restarting) and the next boot (starting) double: ~100, 200, 400 ms.
  const ev = (await allEvents(orch)).filter((e) => e.service === 'crash');
  const gaps: number[] = [];
  for (let i = 0; i < ev.length; i++) {
    if (ev[i]!.to !== 'restarting') continue;
    const next = ev.slice(i + 1).find((e) => e.to === 'starting');
    if (next) gaps.push(Date.parse(next.time) - Date.parse(ev[i]!.time));
  }
  assert.equal(gaps.length, 3, `restart gaps ${gaps}`);
  // Lower bounds are exact (a timer never fires early); scheduling noise only adds.
  assert.ok(gaps[0]! >= 90 && gaps[1]! >= 190 && gaps[2]! >= 390, `backoff not exponential: ${gaps}`);
  assert.ok(gaps[2]! > gaps[0]!, `backoff not growing: ${gaps}`);
  assert.equal(vmCopies(['crash'], homes()).get('crash')!.length, 0, 'no VM left after failing');
});
