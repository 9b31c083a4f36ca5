#!/usr/bin/env node
// Benchmark: a worker host under CPU load unpacking an image while it holds a live lease
// (docs/ORCHESTRATION.md "A busy host"). It measures how long the event loop stalls and
// whether the worker's own fence (HostLiveness) kills the lease it holds meanwhile.
//
//   npx tsc -b && . .monocore-test/env.sh && node bench/liveness-stall.mjs [load=10] [runs=3] [leaseMs=8000]
//
// Per run: `load` busy child processes (`sh -c 'while :; do :; done'`, as `stress -c` does)
// load the machine; in this process a HostLiveness (the worker's own class, real timers,
// Redis DB 42 of the test Redis) holds the lease of one service and renews it every L/4;
// then ensureImageRootfs unpacks a ~210 MB, ~13,000-entry gzip layer of real host files and
// writes its erofs block image in the same pass, as the puller does. Printed per run: the
// wall time and CPU time of the unpack, the worst stall (the longest gap between two turns of a 5 ms timer), stalls
// over 0.5 s, renewal rounds that gave up or were skipped, and whether the fence fired.
// The layer is cached in bench/out/liveness-stall/; each run unpacks into a fresh home there.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { ensureImageRootfs, Keys, leaseTiming, MonocoreHome } from '@monocore/engine';
import { HostLiveness } from '@monocore/worker';
import { sha256File } from './support/sha256-file.mjs';

const load = Number(process.argv[2] ?? 10);
const runs = Number(process.argv[3] ?? 3);
const leaseMs = Number(process.argv[4] ?? 8000);
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'out', 'liveness-stall');
const SOURCES = ['usr/include', 'usr/lib/python3.11', 'usr/share/perl', 'usr/share/zoneinfo'];
const DB = 42;
const base = process.env.MONOCORE_TEST_REDIS_URL;
if (!base) throw new Error('MONOCORE_TEST_REDIS_URL is not set: . .monocore-test/env.sh first');
const redisUrl = `${base.replace(/\/\d*$/, '')}/${DB}`;

async function prepare() {
  mkdirSync(out, { recursive: true });
  const gz = join(out, 'layer.tar.gz');
  if (!existsSync(join(out, 'meta.json'))) {
    console.error('building the fixture layer…');
    execFileSync('sh', ['-c', `tar -C / --sort=name -cf - ${SOURCES.filter((s) => existsSync('/' + s)).join(' ')} | gzip -n -6 > '${gz}'`]);
    const entries = Number(execFileSync('sh', ['-c', `tar -tzf '${gz}' | wc -l`], { encoding: 'utf8' }).trim());
    const bytes = Number(execFileSync('sh', ['-c', `gzip -dc '${gz}' | wc -c`], { encoding: 'utf8' }).trim());
    writeFileSync(join(out, 'meta.json'), JSON.stringify({ hex: await sha256File(gz), entries, bytes }));
  }
  return { gz, ...JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) };
}

/** The longest gap between two turns of a 5 ms timer, and the gaps over 0.5 s. */
function stallMonitor() {
  let prev = performance.now();
  let worst = 0;
  const long = [];
  const timer = setInterval(() => {
    const now = performance.now();
    const gap = now - prev - 5;
    prev = now;
    if (gap > worst) worst = gap;
    if (gap > 500) long.push(gap);
  }, 5);
  return { stop: () => (clearInterval(timer), { worst, long }) };
}

function busyChildren(n) {
  return Array.from({ length: n }, () => spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
}

async function stopChildren(children) {
  await Promise.all(
    children.map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGKILL');
      return gone;
    }),
  );
}

const layer = await prepare();
const timing = leaseTiming(leaseMs);
const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
await redis.connect();
await redis.flushdb();
console.error(
  `layer: ${(layer.bytes / 1e6).toFixed(0)} MB, ${layer.entries} entries (gzip ${(statSync(layer.gz).size / 1e6).toFixed(0)} MB); ` +
    `lease L = ${leaseMs} ms (renew ${timing.renewEveryMs}, fence after ${timing.fenceAfterMs}); load: ${load} busy processes`,
);

const rows = [];
for (let run = 1; run <= runs; run++) {
  const home = new MonocoreHome(join(out, `home-${run}`));
  rmSync(home.root, { recursive: true, force: true });
  const name = `bench-stall-${run}`;
  const epoch = 1;
  await redis.hset(Keys.service(name), { host: 'bench-stall', epoch, status: 'running', desired: 'running' });
  const events = { gaveUp: 0, skipped: 0 };
  const logger = pino({ level: 'info' }, {
    write(line) {
      const msg = JSON.parse(line).msg;
      if (msg === 'heartbeat failed') events.gaveUp++;
      else if (typeof msg === 'string' && msg.startsWith('renewal round skipped')) events.skipped++;
    },
  });
  const fenced = [];
  const liveness = new HostLiveness({
    info: { id: 'bench-stall', cpus: 2, ramMib: 1024, backends: ['qemu'] },
    redis,
    timing,
    logger,
    usage: () => ({ freeCpus: 2, freeRamMib: 1024 }),
    fence: (service, _epoch, why) => fenced.push(`${service}: ${why}`),
    reclaim: async () => undefined,
  });
  await liveness.start();
  if ((await liveness.acquire(name, epoch)) !== 'held') throw new Error('could not take the lease');
  const children = busyChildren(load);
  await sleep(2000); // the load builds up
  const monitor = stallMonitor();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await ensureImageRootfs({
    home,
    imageId: `sha256:${createHash('sha256').update(`liveness-stall-${run}-${Date.now()}`).digest('hex')}`,
    layers: [{ digest: `sha256:${layer.hex}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: statSync(layer.gz).size, path: layer.gz }],
    blockImage: true,
  });
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const cpuMs = (c.user + c.system) / 1000; // this process, all its threads (the decompressor's too)
  const { worst, long } = monitor.stop();
  const load1 = loadavg()[0];
  await stopChildren(children);
  await liveness.stop();
  await liveness.release(name, epoch);
  rmSync(home.root, { recursive: true, force: true });
  const row = { run, load1, wallMs, cpuMs, worst, long, ...events, fenced };
  rows.push(row);
  console.error(
    `run ${run}/${runs}: load avg ${load1.toFixed(1)}, unpack ${(wallMs / 1000).toFixed(1)} s (CPU ${(cpuMs / 1000).toFixed(1)} s), worst stall ${(worst / 1000).toFixed(2)} s, ` +
      `${long.length} stalls > 0.5 s, rounds gave up ${events.gaveUp}, skipped ${events.skipped}, fenced: ${fenced.length ? fenced.join('; ') : 'no'}`,
  );
}
await redis.quit();

console.log('| run | load avg (1 min) | unpack + erofs: wall (CPU) | worst stall | stalls > 0.5 s | rounds gave up / skipped | fenced |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.run} | ${r.load1.toFixed(1)} | ${(r.wallMs / 1000).toFixed(1)} s (${(r.cpuMs / 1000).toFixed(1)} s) | ${(r.worst / 1000).toFixed(2)} s | ${r.long.length} | ${r.gaveUp} / ${r.skipped} | ${r.fenced.length ? 'yes' : 'no'} |`,
  );
}
