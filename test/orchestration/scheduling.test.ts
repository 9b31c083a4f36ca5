// Scheduling on real Redis + BullMQ with the real worker (in process) and the
// labelled host-process backend: many short services, no VM boots.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allEvents, byName, harness, removeDir, svc, until, type Harness } from './support.js';

const DB = 4;
const out = mkdtempSync(join(tmpdir(), 'mc-orch-sched-'));
after(() => removeDir(out));

/** A service that records when it started (ns) in $OUT/<name>, then stays up. */
function stamped(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return svc(name, {
    command: '/bin/sh',
    args: ['-c', `date +%s%N >> "$OUT/${name}"; exec sleep 1000`],
    envs: [`OUT=${out}`],
    ...extra,
  });
}
const stamps = (name: string): bigint[] =>
  existsSync(join(out, name))
    ? readFileSync(join(out, name), 'utf8').trim().split('\n').filter(Boolean).map((l) => BigInt(l))
    : [];

/** `running` means the process was spawned; its first line (the stamp) may land a moment later. */
async function stamped1(names: string[], count = 1): Promise<void> {
  await until(`stamps of ${names.join(', ')}`, async () => names.every((n) => stamps(n).length >= count), 10_000);
}

async function withHarness(fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = await harness(DB);
  try {
    await fn(h);
  } finally {
    await h.orch.down({ wait: true, timeoutMs: 20_000 }).catch(() => undefined);
    await h.close();
  }
}

test('a three-level chain starts in dependency order (recorded timestamps)', () =>
  withHarness(async (h) => {
    const config = {
      service: [stamped('c3', { depends_on: ['b3'] }), stamped('a3'), stamped('b3', { depends_on: ['a3'] })],
    };
    const res = await h.orch.up(config, { wait: true, timeoutMs: 20_000 });
    assert.deepEqual(res.plan.map((p) => [p.name, p.level]), [['a3', 0], ['b3', 1], ['c3', 2]]);
    const s = byName(res.services);
    for (const n of ['a3', 'b3', 'c3']) assert.equal(s[n]?.status, 'running', `${n}: ${JSON.stringify(s[n])}`);
    await stamped1(['a3', 'b3', 'c3']);
    // Each dependent's command ran only after its dependency was running (started_at, ms):
    // a dependency's own first line may land later than its dependent's (both are running).
    const ms = (n: string) => Number(stamps(n)[0]! / 1_000_000n);
    const started = (n: string) => Date.parse(s[n]!.startedAt!);
    assert.ok(ms('b3') >= started('a3'), `b3 ran at ${ms('b3')}, before a3 was running at ${started('a3')}`);
    assert.ok(ms('c3') >= started('b3'), `c3 ran at ${ms('c3')}, before b3 was running at ${started('b3')}`);
    assert.ok(started('a3') <= started('b3') && started('b3') <= started('c3'));
    // Heartbeats sample each running service's usage (/proc of its VM or process).
    const sampled = await until('usage sampled', async () => {
      const [x] = await h.orch.status({ services: ['a3'] });
      return x?.memoryBytes !== undefined && x.memoryBytes > 0 && x.cpuPercent !== undefined ? x : undefined;
    }, 10_000);
    assert.ok(sampled.memoryBytes! > 100_000 && sampled.cpuPercent! >= 0);
  }));

test('a diamond boots its shared dependency exactly once; independent services start in parallel', () =>
  withHarness(async (h) => {
    const config = {
      service: [
        stamped('base'),
        stamped('left', { depends_on: ['base'] }),
        stamped('right', { depends_on: ['base'] }),
        stamped('top', { depends_on: ['left', 'right'] }),
        stamped('solo'),
      ],
    };
    const res = await h.orch.up(config, { wait: true, timeoutMs: 20_000 });
    for (const s of res.services) assert.equal(s.status, 'running', JSON.stringify(s));
    await stamped1(['base', 'left', 'right', 'top', 'solo']);
    for (const n of ['base', 'left', 'right', 'top', 'solo']) assert.equal(stamps(n).length, 1, `${n} started ${stamps(n).length} times`);
    const st = byName(res.services);
    const ms = (n: string) => Number(stamps(n)[0]! / 1_000_000n);
    const started = (n: string) => Date.parse(st[n]!.startedAt!);
    assert.ok(ms('left') >= started('base') && ms('right') >= started('base'), 'left/right after base');
    assert.ok(ms('top') >= started('left') && ms('top') >= started('right'), 'top after left and right');
    const events = await allEvents(h.orch);
    const starting = events.filter((e) => e.to === 'starting').map((e) => e.service);
    assert.deepEqual([...starting].sort(), ['base', 'left', 'right', 'solo', 'top']);
  }));

test('a failed dependency leaves its dependents blocked with the reason; others run', () =>
  withHarness(async (h) => {
    const config = {
      service: [
        svc('broken', { command: '/nonexistent/monocore-test-cmd' }),
        svc('mid', { depends_on: ['broken'] }),
        svc('top', { depends_on: ['mid'] }),
        svc('free'),
      ],
    };
    const res = await h.orch.up(config, { wait: true, timeoutMs: 20_000 });
    const s = byName(res.services);
    assert.equal(s.broken?.status, 'failed');
    assert.match(s.broken?.reason ?? '', /command not found/);
    assert.equal(s.broken?.attempts, 2, 'the boot was retried (attempts + backoff) before failing');
    assert.equal(s.mid?.status, 'blocked');
    assert.equal(s.mid?.blockedBy, 'broken');
    assert.equal(s.top?.status, 'blocked');
    assert.equal(s.top?.blockedBy, 'mid');
    assert.equal(s.free?.status, 'running');
    const outcome = await h.orch.waitFor(res.deploymentId);
    assert.equal(outcome.ok, false);
  }));

test('a crash loop restarts with exponential backoff, then ends failed with exit code and log tail', () =>
  withHarness(async (h) => {
    const config = {
      service: [svc('crash', { command: '/bin/sh', args: ['-c', 'echo "boom $$" >&2; exit 3'], max_restarts: 3 })],
    };
    await h.orch.up(config);
    const failed = await until('crash to fail', async () => {
      const [s] = await h.orch.status({ services: ['crash'] });
      return s?.status === 'failed' ? s : undefined;
    });
    assert.equal(failed.exitCode, 3);
    assert.equal(failed.restarts, 3);
    assert.match(failed.reason ?? '', /code 3 after 3 restarts/);
    assert.match(failed.logTail ?? '', /\[stderr\] boom \d+/);
    // Delays between an exit (restarting) and the next boot (starting) double: ~100, 200, 400 ms.
    const ev = (await allEvents(h.orch)).filter((e) => e.service === 'crash');
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
  }));

test('up is idempotent: unchanged services are untouched, a changed one is restarted', () =>
  withHarness(async (h) => {
    const config = (v: string) => ({ service: [stamped('keep'), stamped('change', { envs: [`OUT=${out}`, `V=${v}`], depends_on: ['keep'] })] });
    const first = await h.orch.up(config('1'), { wait: true, timeoutMs: 20_000 });
    const pids1 = byName(first.services);
    const again = await h.orch.up(config('1'), { wait: true, timeoutMs: 20_000 });
    assert.deepEqual(again.plan.map((p) => p.action), ['unchanged', 'unchanged']);
    const pids2 = byName(again.services);
    assert.equal(pids2.keep?.pid, pids1.keep?.pid);
    assert.equal(pids2.change?.pid, pids1.change?.pid);
    const changed = await h.orch.up(config('2'), { wait: true, timeoutMs: 20_000 });
    assert.deepEqual(Object.fromEntries(changed.plan.map((p) => [p.name, p.action])), { keep: 'unchanged', change: 'restart' });
    const pids3 = byName(changed.services);
    assert.equal(pids3.keep?.pid, pids1.keep?.pid, 'unchanged service kept its process');
    assert.notEqual(pids3.change?.pid, pids1.change?.pid, 'changed service got a new process');
    assert.equal(pids3.change?.status, 'running');
    await stamped1(['change'], 2);
    assert.equal(stamps('keep').length, 1);
    assert.equal(stamps('change').length, 2);
  }));

test('down stops dependents first; a group subset; remove deletes the state', () =>
  withHarness(async (h) => {
    const config = {
      service: [
        svc('db', { group: 'g1' }),
        svc('api', { group: 'g1', depends_on: ['db'] }),
        svc('web', { group: 'g1', depends_on: ['api', 'db'] }),
        svc('other', { group: 'g2' }),
      ],
      group: [{ name: 'g1' }, { name: 'g2' }],
    };
    await h.orch.up(config, { wait: true, timeoutMs: 20_000 });
    const down = await h.orch.down({ group: 'g1', wait: true, timeoutMs: 20_000 });
    assert.deepEqual(down.order, ['web', 'api', 'db']);
    const stopped = (await allEvents(h.orch)).filter((e) => e.to === 'stopped').map((e) => e.service);
    assert.deepEqual(stopped, ['web', 'api', 'db']);
    const s = byName(await h.orch.status());
    assert.equal(s.other?.status, 'running', 'the other group is untouched');
    for (const n of ['db', 'api', 'web']) assert.equal(s[n]?.status, 'stopped');
    // Both groups landed on the single host; a group is never split.
    assert.equal(new Set(['db', 'api', 'web'].map((n) => s[n]?.host)).size, 1);
    await h.orch.remove({ services: ['web'], wait: true, timeoutMs: 20_000 });
    assert.deepEqual((await h.orch.status()).map((x) => x.name).sort(), ['api', 'db', 'other']);
    await assert.rejects(h.orch.status({ services: ['web'] }), { code: 'MC_ORCH_UNKNOWN_SERVICE' });
  }));

test('logs are readable through Redis (tail and follow)', () =>
  withHarness(async (h) => {
    const config = {
      service: [svc('talker', { command: '/bin/sh', args: ['-c', 'for i in 1 2 3; do echo "line $i"; done; echo oops >&2; sleep 0.3; echo late; exec sleep 1000'] })],
    };
    await h.orch.up(config, { wait: true, timeoutMs: 20_000 });
    const ac = new AbortController();
    const seen: string[] = [];
    const follow = (async () => {
      for await (const line of h.orch.logs('talker', { stream: 'stdout', tail: 2, follow: true, signal: ac.signal })) {
        seen.push(line);
        if (line === 'late') ac.abort();
      }
    })();
    await until('the late line', async () => seen.includes('late'), 10_000);
    ac.abort();
    await follow;
    assert.ok(seen.includes('late'));
    const tail: string[] = [];
    for await (const l of h.orch.logs('talker', { stream: 'stdout', tail: 10 })) tail.push(l);
    assert.deepEqual(tail, ['line 1', 'line 2', 'line 3', 'late']);
    const err: string[] = [];
    for await (const l of h.orch.logs('talker', { stream: 'stderr' })) err.push(l);
    assert.deepEqual(err, ['oops']);
    // The host keeps the same lines in its rotating file.
    assert.match(readFileSync(join(h.homes[0]!, 'log', 'talker.stdout.log'), 'utf8'), /line 1\nline 2\nline 3\nlate\n/);
    await assert.rejects(async () => {
      for await (const _ of h.orch.logs('nope', { stream: 'stdout' })) void _;
    }, { code: 'MC_ORCH_UNKNOWN_SERVICE' });
  }));

test('events() streams state changes live and resumes from an id', () =>
  withHarness(async (h) => {
    const ac = new AbortController();
    const seen: Array<{ id: string; service?: string; to?: string; kind: string }> = [];
    const reader = (async () => {
      for await (const e of h.orch.events({ signal: ac.signal })) {
        seen.push(e);
        if (e.service === 'ev2' && e.to === 'running') ac.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 100)); // the reader is blocked on XREAD
    await h.orch.up({ service: [svc('ev1'), svc('ev2', { depends_on: ['ev1'] })] });
    await reader;
    const trail = seen.filter((e) => e.service === 'ev2').map((e) => e.to);
    assert.deepEqual(trail, ['starting', 'running']);
    assert.ok(seen.some((e) => e.kind === 'deployment'));
    // Resume after the first event: the rest is replayed from the stream.
    const first = seen[0]!;
    const replay: string[] = [];
    const ac2 = new AbortController();
    for await (const e of h.orch.events({ since: first.id, signal: ac2.signal })) {
      replay.push(e.id);
      if (replay.length === seen.length - 1) ac2.abort();
    }
    assert.deepEqual(replay, seen.slice(1).map((e) => e.id));
  }));

test('a service pulls its image on its host first; a pull that cannot succeed fails the service and blocks its dependents', async () => {
  const { testEnv } = await import('../support/env.js');
  const env = testEnv();
  const h = await harness(DB, [{ hostId: 'h1', puller: true }]);
  try {
    const missing = `${env.registry}/monocore-test/does-not-exist:latest`;
    const config = {
      service: [
        svc('pulled', { base: env.image }),
        svc('nopull', { base: missing }),
        svc('after', { depends_on: ['nopull'] }),
      ],
    };
    const res = await h.orch.up(config, { wait: true, timeoutMs: 60_000 });
    const s = byName(res.services);
    assert.equal(s.pulled?.status, 'running');
    assert.equal(s.nopull?.status, 'failed');
    assert.match(s.nopull?.reason ?? '', /^pull failed: .*MC_OCI_MANIFEST_NOT_FOUND/);
    assert.equal(s.after?.status, 'blocked');
    assert.equal(s.after?.blockedBy, 'nopull');
    const events = await allEvents(h.orch);
    assert.ok(events.some((e) => e.service === 'pulled' && e.to === 'pulling'), 'pulling is visible while the pull runs');
    // The image landed in this host's store (the service booted from it).
    assert.ok(existsSync(join(h.homes[0]!, 'oci')));
  } finally {
    await h.orch.down({ wait: true, timeoutMs: 20_000 }).catch(() => undefined);
    await h.close();
  }
});

test('clear errors at the boundary: invalid config, no hosts, no capacity, unknown deployment, wait timeout', async () => {
  const h = await harness(DB, []);
  try {
    await assert.rejects(
      h.orch.up({ service: [{ name: 'a', cpus: 0 }, { name: 'b', depends_on: ['zz'] }] }),
      (e: unknown) => {
        const err = e as { code?: string; details?: { issues?: unknown[] } };
        return err.code === 'MC_CONFIG_INVALID' && (err.details?.issues?.length ?? 0) >= 2;
      },
    );
    await assert.rejects(h.orch.up({ service: [svc('a')] }), { code: 'MC_ORCH_NO_HOSTS' });
    await h.orch.hosts.register({ id: 'tiny', cpus: 1, ramMib: 256, backends: ['qemu'] }, 60_000);
    await assert.rejects(h.orch.up({ service: [svc('a', { ram: 512 })] }), (e: unknown) => {
      const err = e as { code?: string; message?: string };
      return err.code === 'MC_ORCH_NO_CAPACITY' && /service "a"/.test(err.message ?? '') && /tiny 1 cpus\/256 MiB/.test(err.message ?? '');
    });
    await assert.rejects(h.orch.waitFor('dnope'), { code: 'MC_ORCH_DEPLOYMENT_NOT_FOUND' });
    // A registered host that runs no worker: the request is accepted, and waiting times out clearly.
    await assert.rejects(h.orch.up({ service: [svc('a')] }, { wait: true, timeoutMs: 300 }), { code: 'MC_ORCH_TIMEOUT' });
  } finally {
    await h.close();
  }
});
