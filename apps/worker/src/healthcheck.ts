#!/usr/bin/env node
// A container health check for monocore-worker (docker-compose.yml): exits 0 while this host's
// heartbeat is current in Redis — the same key whose expiry makes other hosts take its services
// over — and 1 otherwise, naming why. Same environment as the worker (MONOCORE_REDIS_URL,
// MONOCORE_HOST_ID or the hostname).
import { Redis } from 'ioredis';
// The state domain alone: the whole engine takes seconds to load on a busy host.
import { HostRegistry, heartbeatAgeMs } from '@monocore/engine/state';
import { workerHostId } from './host-id.js';

const url = process.env.MONOCORE_REDIS_URL;
if (!url) {
  process.stderr.write('monocore-worker healthcheck: MONOCORE_REDIS_URL is not set\n');
  process.exit(1);
}
const id = workerHostId();
const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, enableOfflineQueue: false });
try {
  await redis.connect();
  const host = (await new HostRegistry(redis).list()).find((h) => h.id === id);
  if (!host) throw new Error(`host ${id} is not registered`);
  if (!host.alive) throw new Error(`host ${id}: heartbeat expired (last ${host.lastHeartbeatAt ?? 'never'})`);
  process.stdout.write(`host ${id} alive, heartbeat ${heartbeatAgeMs(host) ?? '?'} ms ago\n`);
  process.exitCode = 0;
} catch (err) {
  process.stderr.write(`monocore-worker healthcheck: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  redis.disconnect();
}
