#!/usr/bin/env node
// Benchmark: orchestration overhead with a 200-service config and a deep DAG,
// on real Redis + BullMQ with the real worker (its own process,
// bench/support/instant-worker.mjs, with the benchmark-only InstantBackend —
// NOT A SANDBOX, injected through startWorker({ backend }): a "boot" starts
// nothing, so what is timed is the scheduler, not a hypervisor). Services name
// the busybox test image as `base`; the worker's puller pulls it (loopback).
//
//   npx tsc -b && . .monocore-test/env.sh && node bench/orch-up.mjs [runs=5]
//
// 1. API time of up(): validate + plan + place + record desired state + enqueue
//    the whole flow (no wait). Goal < 100 ms.
// 2. Scheduling overhead per service: from the moment its last dependency became
//    `running` to its own `starting` (both from the events stream written by the
//    worker). Goal median < 20 ms.
// The worker runs as its own process (the real startWorker()), as in a
// deployment, so the API timing is not disturbed by the worker's event loop.
// Uses Redis database 15 of MONOCORE_TEST_REDIS_URL (flushed).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Orchestrator, shapeDag } from '@monocore/engine';

const workerMain = fileURLToPath(new URL('./support/instant-worker.mjs', import.meta.url));
async function startWorker({ redisUrl, hostId, home }) {
  const child = spawn(process.execPath, [workerMain], {
    env: { ...process.env, MONOCORE_REDIS_URL: redisUrl, MONOCORE_HOST_ID: hostId, MONOCORE_HOME: home,
      MONOCORE_WORKER_CPUS: '1000', MONOCORE_WORKER_RAM_MIB: '1000000', MONOCORE_WORKER_CONCURRENCY: '32', MONOCORE_LEASE_MS: '4000', MONOCORE_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const probe = new Orchestrator({ redisUrl, logger });
  while ((await probe.hosts.alive()).length === 0) await new Promise((r) => setTimeout(r, 50));
  await probe.close();
  return { close: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }) };
}

const runs = Number(process.argv[2] ?? 5);
const base = (process.env.MONOCORE_TEST_REDIS_URL ?? '').replace(/\/\d*$/, '');
if (!base) {
  console.error('MONOCORE_TEST_REDIS_URL is not set: bash scripts/test-services.sh start && . .monocore-test/env.sh');
  process.exit(2);
}
const url = `${base}/15`;
const image = process.env.MONOCORE_TEST_IMAGE;
if (!image) {
  console.error('MONOCORE_TEST_IMAGE is not set: bash scripts/test-services.sh start && . .monocore-test/env.sh');
  process.exit(2);
}
const logger = pino({ level: 'silent' });

/** 200 services in 32 levels (the seed's maximum chain); each depends on 1-3 services of the level below. */
function config(seed) {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const levels = Array.from({ length: 32 }, () => []);
  const service = [];
  for (let i = 0; i < 200; i++) {
    const l = i < 32 ? i : 1 + Math.floor(rnd() * 31);
    const name = `s${i}`;
    levels[l].push(name);
    const below = levels[l - 1] ?? [];
    const deps = new Set();
    if (l > 0) {
      deps.add(i < 32 ? `s${i - 1}` : below[Math.floor(rnd() * below.length)]);
      const extra = Math.floor(rnd() * 3);
      for (let k = 0; k < extra; k++) {
        const lv = levels[Math.floor(rnd() * l)];
        if (lv.length) deps.add(lv[Math.floor(rnd() * lv.length)]);
      }
    }
    service.push({ name, base: image, command: '/bin/sleep', args: ['600'], cpus: 1, ram: 64, depends_on: [...deps] });
  }
  return { service };
}

const median = (a) => { const s = [...a].sort((p, q) => p - q); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

const flush = new Redis(url);
const upTimes = [];
const overheads = [];
let edges = 0;
let flowJobs = 0;
for (let run = 0; run < runs; run++) {
  await flush.flushdb();
  const home = mkdtempSync(join(tmpdir(), 'mc-bench-orch-'));
  const worker = await startWorker({
    redisUrl: url, hostId: 'bench', home,
  });
  const orch = new Orchestrator({ redisUrl: url, logger });
  const cfg = config(run + 1);
  edges = cfg.service.reduce((a, s) => a + s.depends_on.length, 0);
  const deps = new Map(cfg.service.map((s) => [s.name, s.depends_on]));
  const shape = shapeDag(cfg.service.map((s) => s.name), (n) => deps.get(n) ?? []);
  flowJobs = cfg.service.length + [...shape.gates.values()].reduce((a, g) => a + g.length, 0) + 1;
  await orch.status(); // warm the connection
  const t0 = performance.now();
  const res = await orch.up(cfg);
  upTimes.push(performance.now() - t0);
  const outcome = await orch.waitFor(res.deploymentId, { timeoutMs: 300_000 });
  if (!outcome.ok) throw new Error('deployment failed: ' + JSON.stringify(outcome.services.filter((s) => s.status !== 'running')));
  // Overhead from the events stream.
  const ev = await orch.state.redis.xrange('{monocore}:events', '-', '+');
  const running = new Map();
  const starting = new Map();
  for (const [id, f] of ev) {
    const o = {};
    for (let i = 0; i < f.length; i += 2) o[f[i]] = f[i + 1];
    const ms = Number(id.split('-')[0]);
    if (o.to === 'running' && !running.has(o.service)) running.set(o.service, ms);
    if (o.to === 'starting' && !starting.has(o.service)) starting.set(o.service, ms);
  }
  for (const s of cfg.service) {
    if (s.depends_on.length === 0) continue;
    const ready = Math.max(...s.depends_on.map((d) => running.get(d)));
    overheads.push(starting.get(s.name) - ready);
  }
  await orch.down({ wait: true, timeoutMs: 120_000 });
  await worker.close({ handBack: false });
  await orch.close();
  rmSync(home, { recursive: true, force: true });
  process.stderr.write(`run ${run + 1}/${runs}: up ${upTimes.at(-1).toFixed(1)} ms\n`);
}
// Phase 2: a 32-deep chain (every 4th link also depends on the head, through an
// await gate): per-hop latency with nothing else competing for the worker.
const hops = [];
for (let run = 0; run < runs; run++) {
  await flush.flushdb();
  const home = mkdtempSync(join(tmpdir(), 'mc-bench-chain-'));
  const worker = await startWorker({ redisUrl: url, hostId: 'bench', home });
  const orch = new Orchestrator({ redisUrl: url, logger });
  const service = Array.from({ length: 32 }, (_, i) => ({ name: `c${i}`, base: image, command: '/bin/sleep', args: ['600'], ram: 64, depends_on: i ? [`c${i - 1}`] : [] }));
  for (let i = 4; i < 32; i += 4) service[i].depends_on.push('c0');
  const res = await orch.up({ service });
  await orch.waitFor(res.deploymentId, { timeoutMs: 120_000 });
  const ev = await orch.state.redis.xrange('{monocore}:events', '-', '+');
  const running = new Map();
  const starting = new Map();
  for (const [id, f] of ev) {
    const o = {};
    for (let i = 0; i < f.length; i += 2) o[f[i]] = f[i + 1];
    const ms = Number(id.split('-')[0]);
    if (o.to === 'running') running.set(o.service, ms);
    if (o.to === 'starting') starting.set(o.service, ms);
  }
  for (const s of service) if (s.depends_on.length) hops.push(starting.get(s.name) - Math.max(...s.depends_on.map((d) => running.get(d))));
  await orch.down({ wait: true, timeoutMs: 60_000 });
  await worker.close({ handBack: false });
  await orch.close();
  rmSync(home, { recursive: true, force: true });
}
await flush.flushdb();
await flush.quit();

console.log(`orchestration benchmark (${new Date().toISOString()}, ${cpus().length} cpus, load ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
console.log(`config: 200 services, ${edges} depends_on edges, 32 levels; flow: ${flowJobs} jobs (services + await gates + root)`);
console.log(`up() API time (plan + place + state + enqueue), ${runs} runs: median ${median(upTimes).toFixed(1)} ms, min ${Math.min(...upTimes).toFixed(1)}, max ${Math.max(...upTimes).toFixed(1)}`);
console.log(`scheduling overhead (last dependency running → own starting), ${overheads.length} samples: median ${median(overheads)} ms, p90 ${pct(overheads, 0.9)} ms, max ${Math.max(...overheads)} ms`);
console.log(`32-deep chain (7 extra edges through await gates), ${hops.length} hops: median ${median(hops)} ms, p90 ${pct(hops, 0.9)} ms, min ${Math.min(...hops)} ms`);
process.exit(0);
