#!/usr/bin/env node
// Benchmark: GET /status latency with N services in state, at 1 and at 10 concurrent connections,
// through the real API server (`monocore-api` in its own process: Fastify, bearer auth, zod
// response schema, log level warn) on loopback and the real orchestrator reading real Redis; the
// load generator (autocannon) runs in this process. Goal (issue 12): p50 at 10 connections within
// 2x of the p50 at 1 connection, with 1,000 services.
//
//   npx tsc -b && . .monocore-test/env.sh && node bench/status.mjs [services=1000] [seconds=10] [connections=1,10] [rounds=2]
//   npm run bench -- status 1000 10 1,10 2
//
// State: an N-service config (chains of 10, each chain's head depending on svc-0) deployed with
// /up onto a registered host that has no worker, so every service stays `pending` with its full
// record (desired state, host, deployment, config hash, image): /status reads and encodes the
// same hashes it would for running services. The connection counts run one after the other,
// `rounds` times over (1, 10, 1, 10, …), each after a 2 s warm-up, so both see the same machine;
// medianP50Ms is the median of the rounds' p50s. Also timed, in-process: one state read of every
// service (StateStore.listSummary, one Lua script) against the read it replaced (the set, then a
// pipelined HMGET per service), alternating: wall time and Redis's own CPU time per read.
// Uses Redis database 14 of MONOCORE_TEST_REDIS_URL (flushed).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpus, loadavg } from 'node:os';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { HostRegistry, StateStore } from '@monocore/engine';

const services = Number(process.argv[2] ?? 1000);
const seconds = Number(process.argv[3] ?? 10);
const connectionCounts = (process.argv[4] ?? '1,10').split(',').map(Number);
const rounds = Number(process.argv[5] ?? 2);
const base = process.env.MONOCORE_TEST_REDIS_URL;
if (!base) {
  console.error('MONOCORE_TEST_REDIS_URL is not set: bash scripts/test-services.sh start && . .monocore-test/env.sh');
  process.exit(2);
}
const u = new URL(base);
u.pathname = '/14';
const url = u.toString();
const token = 'bench-token-0123456789abcdef';

const redis = new Redis(url, { maxRetriesPerRequest: null });
await redis.flushdb();
await new HostRegistry(redis).register({ id: 'bench-host', cpus: 1 << 16, ramMib: 1 << 30, backends: ['qemu'] }, 600_000);

const service = Array.from({ length: services }, (_, i) => ({
  name: `svc-${i}`,
  base: '127.0.0.1:15000/monocore-test/busybox:latest',
  command: '/bin/sh',
  args: ['-c', 'exec sleep 600'],
  ram: 64,
  envs: [`INDEX=${i}`],
  depends_on: i === 0 ? [] : i % 10 === 0 ? ['svc-0'] : [`svc-${i - 1}`],
}));

// A free port for the server (its start-up line, which names the port, is below log level warn).
const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const p = probe.address().port;
    probe.close(() => resolve(p));
  });
});
const server = spawn(process.execPath, [new URL('../apps/api/dist/main.js', import.meta.url).pathname], {
  env: { ...process.env, MONOCORE_REDIS_URL: url, MONOCORE_API_PORT: String(port), MONOCORE_API_TOKEN: token, MONOCORE_LOG_LEVEL: 'warn' },
  stdio: ['ignore', 2, 2], // its log goes to stderr: stdout is the result
});
const api = { url: `http://127.0.0.1:${port}` };
for (;;) {
  if (server.exitCode !== null) throw new Error(`monocore-api exited with ${server.exitCode}`);
  const ok = await fetch(`${api.url}/healthz`).then((r) => r.ok, () => false);
  if (ok) break;
  await new Promise((r) => setTimeout(r, 100));
}
const headers = { authorization: `Bearer ${token}` };
const up = await fetch(`${api.url}/up`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ service }) });
if (up.status !== 202) throw new Error(`up failed: ${up.status} ${await up.text()}`);
const status = await (await fetch(`${api.url}/status`, { headers })).json();
if (status.services.length !== services) throw new Error(`expected ${services} services, got ${status.services.length}`);
const bytes = JSON.stringify(status).length;

// The state read alone, in-process: the shipped read (one Lua script) vs the one it replaced
// (the set, then a pipelined HMGET per service), alternating; wall time here, and Redis's own
// CPU time (INFO cpu, user + sys) for each read.
const store = new StateStore(redis);
const perService = async () => {
  const names = await store.names();
  const m = await store.getSummary(names);
  return names.map((n) => m.get(n)).filter((r) => r !== undefined);
};
const redisCpuMs = async () => {
  const info = await redis.info('cpu');
  const v = (k) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)[1]);
  return (v('used_cpu_user') + v('used_cpu_sys')) * 1000;
};
const readMs = { listSummary: [], perServicePipeline: [] };
const readRedisCpuMs = { listSummary: [], perServicePipeline: [] };
for (let i = 0; i < 30; i++) {
  for (const [name, fn] of [['listSummary', () => store.listSummary()], ['perServicePipeline', perService]]) {
    const cpu0 = await redisCpuMs();
    const t0 = performance.now();
    await fn();
    const wall = performance.now() - t0;
    const cpu = (await redisCpuMs()) - cpu0;
    if (i >= 5) {
      readMs[name].push(wall);
      readRedisCpuMs[name].push(cpu);
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const runs = [];
for (let round = 0; round < rounds; round++) {
  for (const connections of connectionCounts) {
    await autocannon({ url: `${api.url}/status`, headers, connections, duration: 2 });
    const load = loadavg()[0];
    const r = await autocannon({ url: `${api.url}/status`, headers, connections, duration: seconds });
    runs.push({
      round,
      connections,
      loadavg1: [Number(load.toFixed(2)), Number(loadavg()[0].toFixed(2))],
      requests: r.requests.total,
      non2xx: r.non2xx,
      errors: r.errors,
      reqPerSec: r.requests.average,
      latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, avg: r.latency.average, max: r.latency.max },
    });
  }
}

server.kill('SIGTERM');
await once(server, 'exit');
await redis.flushdb();
redis.disconnect();

const p50 = Object.fromEntries(connectionCounts.map((c) => [c, median(runs.filter((x) => x.connections === c).map((x) => x.latencyMs.p50))]));
const out = {
  date: new Date().toISOString(),
  cpus: cpus().length,
  services,
  responseBytes: bytes,
  seconds,
  stateRead: Object.fromEntries(
    Object.keys(readMs).map((k) => [
      k,
      {
        wallMs: { median: Number(median(readMs[k]).toFixed(2)), min: Number(Math.min(...readMs[k]).toFixed(2)) },
        redisCpuMs: { median: Number(median(readRedisCpuMs[k]).toFixed(2)), min: Number(Math.min(...readRedisCpuMs[k]).toFixed(2)) },
      },
    ]),
  ),
  runs,
  medianP50Ms: p50,
  ...(connectionCounts.length === 2 ? { p50Ratio: Number((p50[connectionCounts[1]] / p50[connectionCounts[0]]).toFixed(2)) } : {}),
};
console.log(JSON.stringify(out, null, 2));
if (runs.some((r) => r.non2xx > 0 || r.errors > 0)) process.exit(1);
