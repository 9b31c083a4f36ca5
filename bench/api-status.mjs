#!/usr/bin/env node
// Benchmark: GET /status latency under load, 200 services in state, through the
// real API server (Fastify, bearer auth, zod response serialization) on
// loopback and the real orchestrator reading real Redis.
//
//   npx tsc -b && . .monocore-test/env.sh && node bench/api-status.mjs [seconds=10] [connections=10]
//
// State: a 200-service config (chains and fan-out) deployed with up() onto a
// registered host that has no worker, so every service stays `pending` with its
// full record (desired state, host, deployment, config hash, image): /status
// reads and serializes the same hashes it would for running services.
// Uses Redis database 14 of MONOCORE_TEST_REDIS_URL (flushed).
import { cpus, loadavg } from 'node:os';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { HostRegistry } from '@monocore/engine';
import { startApi } from '@monocore/api';

const seconds = Number(process.argv[2] ?? 10);
const connections = Number(process.argv[3] ?? 10);
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
await new HostRegistry(redis).register({ id: 'bench-host', cpus: 512, ramMib: 1 << 20, backends: ['qemu'] }, 600_000);

const service = Array.from({ length: 200 }, (_, i) => ({
  name: `svc-${i}`,
  base: '127.0.0.1:15000/monocore-test/busybox:latest',
  command: '/bin/sh',
  args: ['-c', 'exec sleep 600'],
  ram: 64,
  envs: [`INDEX=${i}`],
  // 20 chains of 10; each chain's head depends on svc-0 (fan-out), so the longest chain is 11.
  depends_on: i === 0 ? [] : i % 10 === 0 ? ['svc-0'] : [`svc-${i - 1}`],
}));

const api = await startApi({ redisUrl: url, host: '127.0.0.1', port: 0, token });
const headers = { authorization: `Bearer ${token}` };
const up = await fetch(`${api.url}/up`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ service }) });
if (up.status !== 202) throw new Error(`up failed: ${up.status} ${await up.text()}`);
const status = await (await fetch(`${api.url}/status`, { headers })).json();
if (status.services.length !== 200) throw new Error(`expected 200 services, got ${status.services.length}`);
const bytes = JSON.stringify(status).length;

// Warm-up, then the measured run.
await autocannon({ url: `${api.url}/status`, headers, connections, duration: 2 });
const load = loadavg()[0];
const r = await autocannon({ url: `${api.url}/status`, headers, connections, duration: seconds });
const loadAfter = loadavg()[0];

await api.close();
await redis.flushdb();
redis.disconnect();

const out = {
  date: new Date().toISOString(),
  cpus: cpus().length,
  loadavg1: [Number(load.toFixed(2)), Number(loadAfter.toFixed(2))],
  services: 200,
  responseBytes: bytes,
  connections,
  seconds,
  requests: r.requests.total,
  non2xx: r.non2xx,
  errors: r.errors,
  reqPerSec: r.requests.average,
  latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, avg: r.latency.average, max: r.latency.max },
};
console.log(JSON.stringify(out, null, 2));
if (r.non2xx > 0 || r.errors > 0) process.exit(1);
