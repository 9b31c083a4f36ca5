/**
 * Pause, resume and fork through the REST API (docs/SNAPSHOTS.md), with a real worker booting QEMU
 * under TCG: a paused sandbox has no QEMU process and no capacity, refuses exec with 409, survives
 * a worker restart, and resumes with its background processes still counting; idle_timeout_s with
 * on_idle "pause" pauses instead of expiring; a paused sandbox can be deleted; a fork's children
 * continue the parent's processes and files, each on its own from then on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Sandbox } from '@monocore/api-schemas';
import { Keys } from '@monocore/engine';
import { startWorker } from '@monocore/worker';
import { TEST_REDIS_DBS } from '../support/env.js';
import { quiet, until, vmEnv } from '../orchestration/support.js';
import { call, createSandbox, exec, sandboxVms, startStack, type Stack } from './sandbox-fixtures.js';
import { assertGuestClock, counterValue, START_COUNTER } from '../support/guest-probes.js';

describe('pause, resume and fork through the REST API (TCG)', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack(TEST_REDIS_DBS['sandbox/sandbox-snapshots'], { workers: [{ hostId: 'pz1' }] });
  });
  after(async () => {
    await stack?.close();
  });

  test('pause ends QEMU and frees capacity; a restarted worker resumes it with its processes still running', async () => {
    const sb = await createSandbox(stack.url, { image: vmEnv().image, ram: 256, disk: 256 });
    const target = `/sandboxes/${sb.id}`;
    await exec(stack.url, target, { cmd: ['sh', '-c', START_COUNTER] });
    await new Promise((r) => setTimeout(r, 1000));
    const before = counterValue((await exec(stack.url, target, { cmd: ['cat', '/tmp/count'] })).stdout);

    const paused = await call<Sandbox>(stack.url, 'POST', `${target}/pause`);
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.equal(paused.body.status, 'paused');
    assert.ok(paused.body.paused_at);
    assert.deepEqual(sandboxVms(sb.id, stack.homes), [], 'no QEMU process while paused');
    assert.equal(await stack.redis.hexists(Keys.hostAlloc('pz1'), `sandbox:${sb.id}`), 0, 'its capacity is released');
    const refused = await call<{ code: string; message: string }>(stack.url, 'POST', `${target}/exec`, { cmd: ['true'] });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'MC_SANDBOX_NOT_RUNNING');
    assert.match(refused.body.message, /paused: resume it first/);
    assert.equal((await call<Sandbox>(stack.url, 'POST', `${target}/pause`)).body.status, 'paused', 'pause is idempotent');

    // The worker restarts (same host id, same home) while the sandbox is paused.
    await stack.workers[0]!.close({ handBack: false });
    stack.workers[0] = await startWorker({ redisUrl: stack.redisUrl, home: stack.homes[0]!, hostId: 'pz1', cpus: 64, ramMib: 8 * 1024, leaseMs: 4000, bootTimeoutMs: 60_000, logger: quiet });
    assert.equal((await call<Sandbox>(stack.url, 'GET', target)).body.status, 'paused', 'still paused after the restart');

    const resumed = await call<Sandbox>(stack.url, 'POST', `${target}/resume`);
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
    assert.equal(resumed.body.status, 'running');
    assert.equal(resumed.body.boot?.from, 'paused');
    assert.equal(await stack.redis.hexists(Keys.hostAlloc('pz1'), `sandbox:${sb.id}`), 1, 'its capacity is taken again');
    await new Promise((r) => setTimeout(r, 1000));
    const sent = Date.now();
    const after = await exec(stack.url, target, { cmd: ['sh', '-c', 'cat /tmp/count; date +%s'] });
    const replied = Date.now();
    const [count, clock] = after.stdout.trim().split('\n');
    assert.ok(counterValue(count ?? '') > before, `the counter went on after the resume: ${before} → ${count}`);
    assertGuestClock(clock ?? '', sent, replied);
    assert.equal((await call<Sandbox>(stack.url, 'POST', `${target}/resume`)).body.status, 'running', 'resume is idempotent');
    assert.equal((await call(stack.url, 'DELETE', target)).status, 200);
  });

  test('fork: two children continue the parent\'s counter and files, on the same host, each its own from then on', async () => {
    const parent = await createSandbox(stack.url, { image: vmEnv().image, ram: 256, disk: 256, env: { ROLE: 'parent' } });
    const p = `/sandboxes/${parent.id}`;
    await exec(stack.url, p, { cmd: ['sh', '-c', `echo before > /tmp/shared; ${START_COUNTER}`] });
    await new Promise((r) => setTimeout(r, 1000));
    const forked = await call<{ sandboxes: Sandbox[] }>(stack.url, 'POST', `${p}/fork`, { count: 2 });
    assert.equal(forked.status, 201, JSON.stringify(forked.body));
    const kids = forked.body.sandboxes;
    assert.equal(kids.length, 2);
    for (const k of kids) {
      assert.equal(k.status, 'running');
      assert.equal(k.fork_of, parent.id);
      assert.equal(k.host, parent.host);
      assert.equal(k.boot?.from, 'fork');
      assert.deepEqual(k.env, { ROLE: 'parent' }, 'the parent\'s settings');
      const r = await exec(stack.url, `/sandboxes/${k.id}`, { cmd: ['sh', '-c', 'cat /tmp/shared; hostname; c1=$(cat /tmp/count); sleep 1; c2=$(cat /tmp/count); [ "$c2" -gt "$c1" ] && echo counting'] });
      assert.equal(r.stdout, `before
${k.id}
counting
`);
    }
    await exec(stack.url, `/sandboxes/${kids[0]!.id}`, { cmd: ['sh', '-c', 'echo mine > /tmp/after'] });
    assert.equal((await exec(stack.url, `/sandboxes/${kids[1]!.id}`, { cmd: ['ls', '/tmp/after'] })).exit_code, 1);
    assert.equal((await exec(stack.url, p, { cmd: ['ls', '/tmp/after'] })).exit_code, 1);
    const bad = await call<{ code: string }>(stack.url, 'POST', `${p}/fork`, { count: 17 });
    assert.equal(bad.status, 400);
    for (const id of [parent.id, ...kids.map((k) => k.id)]) assert.equal((await call(stack.url, 'DELETE', `/sandboxes/${id}`)).status, 200);
  });

  test('idle_timeout_s with on_idle "pause" pauses instead of expiring; a paused sandbox can be deleted, its disk goes', async () => {
    const sb = await createSandbox(stack.url, { image: vmEnv().image, ram: 256, disk: 256, idle_timeout_s: 2, on_idle: 'pause' });
    assert.equal(sb.on_idle, 'pause');
    const target = `/sandboxes/${sb.id}`;
    await until('paused by its idle timeout', async () => (await call<Sandbox>(stack.url, 'GET', target)).body.status === 'paused', 60_000);
    const notPaused = await call<{ code: string }>(stack.url, 'POST', `/sandboxes/${sb.id}/resume`);
    assert.equal(notPaused.status, 200);
    assert.equal((await exec(stack.url, target, { cmd: ['echo', 'back'] })).stdout, 'back\n');
    await until('paused again after being idle', async () => (await call<Sandbox>(stack.url, 'GET', target)).body.status === 'paused', 60_000);
    const del = await call<Sandbox>(stack.url, 'DELETE', target);
    assert.equal(del.body.status, 'deleted');
    assert.equal(existsSync(join(stack.homes[0]!, 'sandboxes', sb.id)), false, 'its disk and saved state are gone');
    const gone = await call<{ code: string }>(stack.url, 'POST', `${target}/resume`);
    assert.equal(gone.status, 409);
    assert.equal(gone.body.code, 'MC_SANDBOX_NOT_RUNNING');
  });
});
