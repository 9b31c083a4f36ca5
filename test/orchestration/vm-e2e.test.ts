// End to end with real microVMs (QEMU under TCG): the worker pulls the test
// image from the loopback registry through its puller, boots one VM per
// service, and the API side reads state and logs from Redis. Few boots: each
// costs ~2 s here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { MonocoreHome, Orchestrator, QemuBackend } from '@monocore/engine';
import { startWorker, type MonocoreWorker } from '@monocore/worker';
import { TEST_REDIS_DBS, testEnvWithKernel } from '../support/env.js';
import { byName, freshDb, quiet, until } from './support.js';

const DB = TEST_REDIS_DBS['orchestration/vm-e2e'];
const env = testEnvWithKernel();
// A persistent home: the initramfs cache and the pulled image are reused between runs.
const home = new MonocoreHome(join(env.stateDir, 'orch-vm-home'));
rmSync(home.servicesDir, { recursive: true, force: true });

let worker: MonocoreWorker | undefined;
let orch: Orchestrator | undefined;
after(async () => {
  await orch?.down({ wait: true, timeoutMs: 60_000 }).catch(() => undefined);
  await worker?.close({ handBack: false });
  await orch?.close();
});

async function setup(): Promise<Orchestrator> {
  if (orch) return orch;
  const url = await freshDb(DB);
  worker = await startWorker({
    redisUrl: url,
    hostId: 'vmhost',
    home,
    backend: new QemuBackend({ home, kernelDir: env.kernelDir, bootTimeoutMs: 60_000 }),
    leaseMs: 4000,
    logger: quiet,
  });
  orch = new Orchestrator({ redisUrl: url, logger: quiet });
  return orch;
}

const logLines = async (o: Orchestrator, service: string, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string[]> => {
  const out: string[] = [];
  for await (const l of o.logs(service, { stream, tail: 100 })) out.push(l);
  return out;
};

test("the seed's two-service example (local image): both count in their VMs and exit 0", async () => {
  const o = await setup();
  const config = {
    service: [
      {
        name: 'sh-counter',
        base: env.image,
        ram: 256,
        cpus: 1,
        group: 'demo',
        command: '/bin/sh',
        args: ['-c', 'for i in $(seq 1 3); do echo $i; sleep 0.2; done'],
      },
      {
        name: 'other-counter',
        base: env.image,
        ram: 256,
        cpus: 1,
        group: 'demo',
        command: '/bin/sh',
        args: ['-c', 'count=0; while [ $count -lt 3 ]; do count=$((count+1)); echo "Count: $count"; done'],
      },
    ],
    group: [{ name: 'demo', local_only: true }],
  };
  const up = await o.up(config, { wait: true, timeoutMs: 120_000 });
  assert.equal(up.plan.length, 2);
  const done = await until(
    'both counters exited',
    async () => {
      const s = byName(await o.status());
      return s['sh-counter']?.status === 'exited' && s['other-counter']?.status === 'exited' ? s : undefined;
    },
    60_000,
    200,
  );
  assert.equal(done['sh-counter']?.exitCode, 0);
  assert.equal(done['other-counter']?.exitCode, 0);
  assert.deepEqual(await logLines(o, 'sh-counter'), ['1', '2', '3']);
  assert.deepEqual(await logLines(o, 'other-counter'), ['Count: 1', 'Count: 2', 'Count: 3']);
});

test('a dependent VM reaches its dependency by service name on the group network, after it started', async () => {
  const o = await setup();
  const config = {
    service: [
      {
        name: 'web',
        base: env.image,
        ram: 128,
        group: 'net',
        command: '/bin/sh',
        args: ['-c', 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www'],
      },
      {
        name: 'client',
        base: env.image,
        ram: 128,
        group: 'net',
        depends_on: ['web'],
        restart: 'no',
        command: '/bin/sh',
        args: ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://web:8080/ && exit 0; sleep 0.5; done; exit 1'],
      },
    ],
    group: [{ name: 'net' }],
  };
  const up = await o.up(config, { wait: true, timeoutMs: 120_000 });
  assert.deepEqual(up.plan.map((p) => p.name), ['web', 'client']);
  const s = await until(
    'client exited',
    async () => {
      const st = byName(await o.status());
      return st.client?.status === 'exited' ? st : undefined;
    },
    60_000,
    200,
  );
  assert.equal(s.client?.exitCode, 0, `client logs: ${(await logLines(o, 'client', 'stderr')).join('\n')}`);
  assert.deepEqual(await logLines(o, 'client'), ['hello-from-web']);
  assert.equal(s.web?.status, 'running');
  assert.ok(Date.parse(s.web!.startedAt!) < Date.parse(s.client!.startedAt!));
  const down = await o.down({ group: 'net', wait: true, timeoutMs: 60_000 });
  assert.deepEqual(down.order, ['client', 'web']);
  assert.equal(byName(down.services).web?.status, 'stopped');
  // remove deletes the writable layer (the per-service disk the VM wrote to) and the state.
  assert.ok(existsSync(home.serviceDir('web')), 'the VM had a per-service state dir');
  await o.remove({ group: 'net', wait: true, timeoutMs: 30_000 });
  assert.ok(!existsSync(home.serviceDir('web')) && !existsSync(home.serviceDir('client')));
  assert.deepEqual((await o.status()).map((x) => x.name).filter((n) => n === 'web' || n === 'client'), []);
});
