/**
 * Sandboxes across two worker hosts: the API and a small worker in this
 * process, a larger worker as a separate process (its own MONOCORE_HOME). The
 * sandbox lands on the larger host; exec and files reach it only through
 * Redis. Then that worker is killed with SIGKILL mid-exec: the streamed call
 * ends with MC_SANDBOX_LOST instead of hanging, the sandbox is `lost` (never
 * recreated on the other host), and its VM died with its worker.
 * Boots: 1 (TCG).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import type { Sandbox } from '@monocore/api-schemas';
import { startApi, type RunningApi } from '@monocore/api';
import { startWorker, type MonocoreWorker } from '@monocore/worker';
import { TEST_REDIS_DBS } from '../support/env.js';
import { freshDb, quiet, removeDir, spawnWorkerProcess, tempHome, until, vmEnv } from '../orchestration/support.js';
import { call, createSandbox, exec, sandboxVms } from './sandbox-fixtures.js';

const LEASE_MS = 4000;

const cleanup: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

test('exec routed through Redis to the host that runs the sandbox; its worker killed mid-exec → lost, a clear error, not recreated', async () => {
  vmEnv();
  const redisUrl = await freshDb(TEST_REDIS_DBS['sandbox/sandbox-multihost']);
  const homeA = tempHome('sbA');
  const homeB = tempHome('sbB');
  cleanup.push(() => removeDir(homeA), () => removeDir(homeB));
  const hostA: MonocoreWorker = await startWorker({ redisUrl, hostId: 'sbA', home: homeA, cpus: 8, ramMib: 512, leaseMs: LEASE_MS, logger: quiet });
  cleanup.push(() => hostA.close({ handBack: false }));
  const b: ChildProcess = spawnWorkerProcess({ redisUrl, hostId: 'sbB', home: homeB, cpus: 8, ramMib: 4096, leaseMs: LEASE_MS });
  cleanup.push(() => void (b.exitCode === null && b.kill('SIGKILL')));
  const api: RunningApi = await startApi({ redisUrl, port: 0, logger: quiet });
  cleanup.push(() => api.close());
  await until('both hosts registered', async () => {
    const hosts = (await call<{ hosts: Array<{ id: string; alive: boolean }> }>(api.url, 'GET', '/hosts')).body.hosts;
    return hosts.filter((h) => h.alive).length === 2;
  }, 60_000);

  // Only sbB has room for 1 GiB.
  const sb = await createSandbox(api.url, { image: vmEnv().image, ram: 1024 });
  assert.equal(sb.host, 'sbB');
  assert.equal(sandboxVms(sb.id, [homeB]).length, 1, 'its VM is a child of the other worker process');
  const target = `/sandboxes/${sb.id}`;
  const r = await exec(api.url, target, { cmd: ['sh', '-c', 'echo routed > /tmp/m; cat /tmp/m; hostname'] });
  assert.equal(r.stdout, `routed\n${sb.id}\n`);
  const put = await fetch(`${api.url}${target}/files?path=/tmp/f`, { method: 'PUT', body: 'via redis' });
  assert.equal(put.status, 200);
  assert.equal(await (await fetch(`${api.url}${target}/files?path=/tmp/f`)).text(), 'via redis');

  // A streamed exec in flight when the worker dies.
  const res = await fetch(`${api.url}${target}/exec`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
    body: JSON.stringify({ cmd: ['sh', '-c', 'echo started; sleep 300'] }),
  });
  const reader = res.body!.getReader();
  let text = '';
  const dec = new TextDecoder();
  while (!text.includes('started')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  const killedAt = Date.now();
  b.kill('SIGKILL');
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  const last = JSON.parse(text.trim().split('\n').at(-1)!) as { error?: { code: string; message: string } };
  assert.equal(last.error?.code, 'MC_SANDBOX_LOST', text);
  console.log(`# the streamed exec ended ${Date.now() - killedAt} ms after the worker was killed (lease ${LEASE_MS} ms)`);

  const rec = (await call<Sandbox>(api.url, 'GET', target)).body;
  assert.equal(rec.status, 'lost');
  assert.equal(rec.code, 'MC_SANDBOX_LOST');
  assert.ok(rec.reason);
  const again = await call<{ code: string }>(api.url, 'POST', `${target}/exec`, { cmd: ['true'] });
  assert.deepEqual([again.status, again.body.code], [410, 'MC_SANDBOX_LOST']);
  await until('its VM to be gone with its worker', async () => sandboxVms(sb.id, [homeB]).length === 0);
  // The surviving host reaps sbB, and the sandbox stays lost: never booted on sbA.
  await until('sbB reaped', async () => {
    const hosts = (await call<{ hosts: Array<{ id: string }> }>(api.url, 'GET', '/hosts')).body.hosts;
    return !hosts.some((h) => h.id === 'sbB');
  }, 30_000);
  assert.equal((await call<Sandbox>(api.url, 'GET', target)).body.status, 'lost');
  assert.equal(sandboxVms(sb.id, [homeA, homeB]).length, 0);
  assert.deepEqual(hostA.sandboxes.ids(), []);
});
