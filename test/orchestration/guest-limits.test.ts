/**
 * A guest's output and a deployment's size stay within what the host offers
 * (docs/THREATS.md, "Guests"), through a real worker and real VMs under TCG:
 * - a guest printing as fast as it can for a while: the host's log files stay
 *   within the retention policy, the Redis stream within its cap, and the
 *   worker's memory does not follow the flood;
 * - more services than the host's capacity: refused with a clear error naming
 *   the service and every host's free capacity, nothing recorded; a host whose
 *   registered capacity is wrong still boots only what fits and says why the
 *   rest waits, never overcommitting its RAM.
 */
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import { Keys, MonocoreHome, STREAM_CAPS, isMonocoreError } from '@monocore/engine';
import { TEST_REDIS_DBS } from '../support/env.js';
import { byName, harness, until } from './support.js';

const KIB = 1024;
const MIB = 1024 * KIB;

// What the worker (this process) really holds: live heap and buffers right after a full GC.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const liveBytes = (): number => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

test('a stdout flood is bounded on the host: log files within the retention policy, the Redis stream capped, worker memory flat', async (t) => {
  const retention = { maxBytes: 256 * KIB, maxFiles: 2, maxAgeMs: 7 * 24 * 3600 * 1000 };
  const h = await harness(TEST_REDIS_DBS['orchestration/guest-limits:flood'], [{ hostId: 'flood', retention }]);
  const redis = new Redis(h.url, { maxRetriesPerRequest: 1 });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, liveBytes())), 500);
  try {
    const FLOOD = 48_000_000; // whole 1000-byte lines
    // 1000-byte lines as fast as the guest can write them, then a marker.
    const script = `yes "$(head -c 999 /dev/zero | tr '\\0' x)" | head -c ${FLOOD}; echo flood-done`;
    const baseline = liveBytes();
    const t0 = Date.now();
    await h.orch.up({ service: [{ name: 'flood', base: process.env.MONOCORE_TEST_IMAGE, ram: 256, restart: 'no', command: '/bin/sh', args: ['-c', script] }] });
    await until('the flood to end', async () => byName(await h.orch.status()).flood?.status === 'exited', 300_000, 200);
    t.diagnostic(`${FLOOD / 1e6} MB through the worker in ${Date.now() - t0} ms; live memory ${(baseline / MIB).toFixed(0)} -> peak ${(peak / MIB).toFixed(0)} MiB`);

    const logDir = new MonocoreHome(h.homes[0]).logDir;
    const files = readdirSync(logDir).filter((f) => f.startsWith('flood.stdout.log'));
    const total = files.reduce((n, f) => n + statSync(join(logDir, f)).size, 0);
    assert.ok(files.length >= 2 && files.length <= retention.maxFiles + 1, `at most ${retention.maxFiles} rotated files plus the live one: ${files.join(', ')}`);
    // Each file may end with one chunk past maxBytes (a chunk is written whole; chunks are at most 64 KiB).
    assert.ok(total <= (retention.maxFiles + 1) * (retention.maxBytes + 64 * KIB), `${total} bytes of stdout logs kept on the host out of ${FLOOD}`);
    const lines = await redis.xlen(Keys.logs('flood', 'stdout'));
    // MAXLEN ~ trims whole macro nodes: allow one node (100 entries by default) over the cap.
    assert.ok(lines > 0 && lines <= STREAM_CAPS.logLines + 100, `the Redis stream holds ${lines} lines (cap ${STREAM_CAPS.logLines})`);
    const last = [];
    for await (const l of h.orch.logs('flood', { stream: 'stdout', tail: 1 })) last.push(l);
    assert.deepEqual(last, ['flood-done'], 'the stream kept the newest lines, through the end of the flood');
    // Nothing buffers the flood: what the worker (this process) holds grew by far less than what went through it.
    assert.ok(peak - baseline < 32 * MIB, `live memory grew by ${((peak - baseline) / MIB).toFixed(0)} MiB while ${FLOOD / 1e6} MB went through`);
  } finally {
    clearInterval(sampler);
    redis.disconnect();
    await h.orch.down({ wait: true, timeoutMs: 60_000 }).catch(() => undefined);
    await h.close();
  }
});

test('more services than capacity: refused naming the service and the free capacity; a host with a wrong registered capacity still never overcommits', async () => {
  const h = await harness(TEST_REDIS_DBS['orchestration/guest-limits:capacity'], [{ hostId: 'small', cpus: 4, ramMib: 640 }]);
  const svc = (name: string): Record<string, unknown> => ({ name, base: process.env.MONOCORE_TEST_IMAGE, ram: 256, command: '/bin/sleep', args: ['600'] });
  try {
    // Three 256 MiB services on a 640 MiB host: refused as a whole, nothing recorded.
    const refused = await h.orch.up({ service: [svc('a'), svc('b'), svc('c')] }).then(() => undefined, (e: unknown) => e);
    assert.ok(isMonocoreError(refused, 'MC_ORCH_NO_CAPACITY'), `refused: ${String(refused)}`);
    assert.match(refused.message, /no host has 1 cpus and 256 MiB free for service "[abc]"; free: small 2 cpus\/128 MiB/);
    assert.deepEqual(await h.orch.status(), [], 'nothing recorded for the refused request');

    // Two fit and run.
    const two = await h.orch.up({ service: [svc('a'), svc('b')] }, { wait: true, timeoutMs: 180_000 });
    assert.deepEqual(two.services.map((s) => [s.name, s.status]).sort(), [['a', 'running'], ['b', 'running']]);
    const third = await h.orch.up({ service: [svc('c')] }).then(() => undefined, (e: unknown) => e);
    assert.ok(isMonocoreError(third, 'MC_ORCH_NO_CAPACITY'), 'a third one does not fit beside them');
    assert.match(third.message, /service "c"; free: small 2 cpus\/128 MiB/);

    // The registry claims more RAM than the host offers (a stale or tampered record): placement
    // accepts c, the host itself does not boot it and the service says why it waits.
    const redis = new Redis(h.url, { maxRetriesPerRequest: 1 });
    try {
      await redis.hset(Keys.host('small'), 'ram_mib', 4096);
    } finally {
      redis.disconnect();
    }
    await h.orch.up({ service: [svc('c')] });
    const waiting = await until('c to say it waits for capacity', async () => {
      const c = byName(await h.orch.status()).c;
      return c && /^waits for capacity on host "small": needs 1 cpus\/256 MiB, 2 cpus\/128 MiB free of 4 cpus\/640 MiB$/.test(c.lastError ?? '') ? c : undefined;
    }, 60_000, 200);
    assert.equal(waiting.status, 'pending', JSON.stringify(waiting));
    assert.equal(h.workers[0]!.supervisor.usage().ramMib, 512, 'the host runs only what fits its 640 MiB');
  } finally {
    await h.orch.down({ wait: true, timeoutMs: 60_000 }).catch(() => undefined);
    await h.close();
  }
});
